"""Every tiny preset, one per family: generation and scoring agree token for token under left
padding, checkpoints round-trip, and builds are seeded. The real architectures that
``rlvlm bench scale`` builds have their checkpoints' sizes."""

from __future__ import annotations

import pytest
import torch
import transformers

import rlvlm
from rlvlm.config import architecture_names
from rlvlm.models import PRESETS, load_policy
from rlvlm.models.architectures import ARCHITECTURES, build_architecture
from rlvlm.models.families import FAMILIES, family_of
from rlvlm.models.presets import build_preset

MAX_NEW_TOKENS = 12


#: One preset per family (tiny-llava-alfworld is tiny-llava with another tokenizer).
FAMILY_PRESETS = list({p.family: n for n, p in reversed(PRESETS.items())}.values())[::-1]


@pytest.fixture(scope="module", params=FAMILY_PRESETS)
def policy(request):
    return load_policy(request.param)


@pytest.fixture(scope="module")
def batch(policy):
    """Three NumberLine observations with prompts of very different lengths (left padding)."""
    env = rlvlm.make("numberline", image_size=policy.image_size)
    images, views = [], []
    for seed in range(3):
        observation, _ = env.reset(seed=seed)
        images.append(observation)
        views.append(env.unwrapped.view())
    task = env.unwrapped.task
    env.close()
    prompts = [task.prompt(views[0]), task.prompt(views[1], cot=False), "Act."]
    return images, prompts


def _reference(policy, images, prompts):
    """Replies sampled by transformers' own generate, and the log-probs it sampled them from."""
    inputs = policy.encode(images, prompts)
    torch.manual_seed(0)
    with torch.no_grad():
        output = policy.model.generate(
            **inputs,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=True,
            temperature=1.0,
            top_k=None,
            suppress_tokens=policy.suppressed_token_ids,
            pad_token_id=policy.pad_token_id,
            eos_token_id=sorted(policy.eos_token_ids),
            output_logits=True,
            return_dict_in_generate=True,
        )
    new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
    logits = torch.stack(output.logits, dim=1).float()
    logits[..., policy.suppressed_token_ids] = float("-inf")
    logprobs = torch.log_softmax(logits, -1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
    replies = [policy._until_eos(tokens) for tokens in new_tokens.tolist()]
    return replies, logprobs


def test_prompt_has_image_tokens(policy, batch):
    inputs = policy.encode(*batch)
    counts = (inputs["input_ids"] == policy.tokenizer.image_token_id).sum(1)
    assert counts.min() > 0 and (counts == counts[0]).all()
    assert (inputs["attention_mask"].sum(1).unique().numel()) == len(batch[1])  # all padded apart
    assert inputs["attention_mask"][:, -1].all()  # left padding


def test_chat_template_prompt_prefixes_the_dialogue(policy):
    """The generation prompt, the reply and the end-of-sequence token begin the dialogue."""
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Go."}]}
    reply = {"role": "assistant", "content": [{"type": "text", "text": '{"action": "+"}'}]}
    dialogue = policy.processor.apply_chat_template([user, reply], tokenize=False)
    expected = policy.chat_prompt("Go.") + '{"action": "+"}' + policy.tokenizer.eos_token
    assert dialogue.startswith(expected)


def test_generate_returns_plain_replies(policy, batch):
    torch.manual_seed(0)
    generation = policy.generate(*batch, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
    suppressed = set(policy.suppressed_token_ids)
    assert len(generation.reply_ids) == len(generation.texts) == len(batch[1])
    for reply in generation.reply_ids:
        assert 0 < len(reply) <= MAX_NEW_TOKENS
        assert not suppressed & set(reply)
        assert policy.tokenizer.image_token_id not in reply


def test_score_matches_generation(policy, batch):
    replies, reference = _reference(policy, *batch)
    with torch.no_grad():
        scores = policy.score(*batch, replies)
    assert scores.values.shape == (len(replies),)
    assert scores.values.dtype == torch.float32 and scores.values.isfinite().all()
    assert scores.reply_mask.sum(1).tolist() == [len(reply) for reply in replies]
    for row, reply in enumerate(replies):  # every row, the padded ones included
        torch.testing.assert_close(
            scores.token_logprobs[row, : len(reply)],
            reference[row, : len(reply)],
            rtol=0,
            atol=1e-5,
        )


def test_generation_records_what_score_computes(policy, batch):
    """The log-probs and values kept at rollout time are those of the training pass."""
    torch.manual_seed(0)
    generation = policy.generate(*batch, max_new_tokens=MAX_NEW_TOKENS, temperature=0.7)
    with torch.no_grad():
        scores = policy.score(*batch, generation.reply_ids, temperature=0.7)
    recorded = generation.scores
    assert torch.equal(recorded.reply_mask, scores.reply_mask)
    assert torch.equal(recorded.action_mask, scores.action_mask)
    torch.testing.assert_close(recorded.token_logprobs, scores.token_logprobs, rtol=0, atol=1e-5)
    torch.testing.assert_close(recorded.values, scores.values, rtol=0, atol=1e-5)
    torch.testing.assert_close(recorded.token_entropy, scores.token_entropy, rtol=0, atol=1e-4)
    torch.testing.assert_close(policy.values(*batch), scores.values, rtol=0, atol=1e-5)
    assert (recorded.token_logprobs[recorded.reply_mask] < 0).all()
    assert (recorded.token_entropy[recorded.reply_mask] > 0).all()


def test_a_minibatch_of_encoded_transitions_scores_as_if_encoded_alone(policy, batch):
    """Encoded once for a rollout, any rows score exactly as when encoding just them: the
    padding they do not need is dropped, and each row keeps its own image."""
    torch.manual_seed(0)
    replies = policy.generate(*batch, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0).reply_ids
    replies[2] = replies[2][:3]  # the shortest prompt with the shortest reply
    inputs = policy.scoring_inputs(*batch, replies)
    for rows in ([2], [1, 2], [2, 0]):
        alone = policy.scoring_inputs(*([items[i] for i in rows] for items in (*batch, replies)))
        taken = inputs.take(rows)
        for key, tensor in alone.inputs.items():
            assert torch.equal(taken.inputs[key], tensor), key
        assert all(map(torch.equal, taken.replies, alone.replies))
        with torch.no_grad():
            a, b = policy.score_inputs(taken), policy.score_inputs(alone)
        assert torch.equal(a.token_logprobs, b.token_logprobs) and torch.equal(a.values, b.values)


def test_save_and_load_give_identical_scores(policy, batch, tmp_path):
    torch.manual_seed(0)
    replies = policy.generate(*batch, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0).reply_ids
    with torch.no_grad():
        before = policy.score(*batch, replies)
    path = policy.save(tmp_path / "checkpoint")
    again = load_policy(path)
    assert again.family is policy.family
    assert type(again.processor) is type(policy.processor)
    assert again.image_size == policy.image_size
    assert torch.equal(again.encode(*batch)["input_ids"], policy.encode(*batch)["input_ids"])
    with torch.no_grad():
        after = again.score(*batch, replies)
    assert torch.equal(after.token_logprobs, before.token_logprobs)
    assert torch.equal(after.values, before.values)
    plain = transformers.AutoModelForImageTextToText.from_pretrained(path)
    assert type(plain) is type(policy.model)


def test_family_and_vision_tower(policy):
    name = policy.model.config.name_or_path
    family = family_of(policy.model.config)
    assert family is FAMILIES[PRESETS[name].family] is policy.family
    assert family_of(policy.model.config.to_dict()) is family
    tower = family.vision_tower(policy.model)
    assert sum(p.numel() for p in tower.parameters()) > 0
    parts = {family.part_of(name) for name, _ in policy.model.named_parameters()}
    assert parts == {"vision", "projector", "language"}


@pytest.mark.parametrize("name", FAMILY_PRESETS)
def test_build_is_seeded(name):
    first, second, other = (build_preset(name, seed)[0].state_dict() for seed in (0, 0, 1))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_a_checkpoints_own_generation_config_does_not_change_sampling(policy, batch, tmp_path):
    """Sampling ignores the settings a checkpoint ships (scoring could not apply them): the
    same replies as without them, recorded with the log-probs the training pass computes."""
    torch.manual_seed(0)
    plain = policy.generate(*batch, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
    policy.save(tmp_path / "shipped")
    shipped = load_policy(tmp_path / "shipped")
    shipped.model.generation_config.update(
        repetition_penalty=1.5, top_k=3, no_repeat_ngram_size=2, min_new_tokens=MAX_NEW_TOKENS
    )
    torch.manual_seed(0)
    generation = shipped.generate(*batch, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
    assert generation.reply_ids == plain.reply_ids
    with torch.no_grad():
        scores = shipped.score(*batch, generation.reply_ids)
    torch.testing.assert_close(
        generation.scores.token_logprobs, scores.token_logprobs, rtol=0, atol=1e-5
    )


#: The parameters of each real checkpoint, worked out from its config by hand (vision tower
#: and projector, plus the language model).
CHECKPOINT_PARAMETERS = {
    "llava-v1.6-mistral-7b": 7_566_747_648,
    "qwen2.5-vl-3b": 3_754_622_976,
    "qwen2.5-vl-7b": 8_292_166_656,
}


def test_every_shipped_architecture_folder_is_buildable_and_no_other():
    # The command line checks --arch against the folders, without loading torch.
    assert architecture_names() == sorted(ARCHITECTURES) == sorted(CHECKPOINT_PARAMETERS)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_shipped_architecture_is_its_checkpoints_size(name):
    policy = build_architecture(name, device="meta")  # shapes only: nothing is allocated
    assert family_of(policy.model.config).name == ("llava" if "llava" in name else "qwen2_5_vl")
    assert sum(p.numel() for p in policy.model.parameters()) == CHECKPOINT_PARAMETERS[name]


def test_a_real_architecture_sees_its_images_and_samples_only_what_its_tokenizer_spells():
    policy = build_architecture("qwen2.5-vl-3b", layers=1)  # every width real, one block deep
    env = rlvlm.make("numberline", image_size=policy.image_size)
    image, _ = env.reset(seed=0)
    prompt = env.unwrapped.task.prompt(env.unwrapped.view())
    inputs = policy.encode([image], [prompt])
    # 300 px, resized to 308 (a multiple of 28): 22 x 22 patches, merged 2 x 2
    assert (inputs["input_ids"] == policy.tokenizer.image_token_id).sum() == 11 * 11
    rows = policy.model.get_output_embeddings().weight.shape[0]
    assert rows > 100 * len(policy.tokenizer)  # the real vocabulary, the preset's tokenizer
    generation = policy.generate([image], [prompt], max_new_tokens=6, temperature=1.0)
    assert all(token < len(policy.tokenizer) for token in generation.reply_ids[0])
    with torch.no_grad():
        scores = policy.score([image], [prompt], generation.reply_ids)
    assert torch.isfinite(scores.token_logprobs).all()
