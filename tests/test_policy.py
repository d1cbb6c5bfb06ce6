"""The VLM policy: action spans for any tokenizer, scoring rules, LoRA, freezing, checkpoints."""

import json
import warnings

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import rlvlm
from rlvlm.models import load_policy
from rlvlm.models.policy import Scores
from rlvlm.models.spans import action_start
from rlvlm.models.training import (
    add_lora,
    enable_gradient_checkpointing,
    freeze,
    lora_targets,
    trainable_parameters,
)

REPLY = '{"current number": 3, "target number": 5, "thoughts": "go up", "action": "+"}'
TWICE = '{"action": "-", "thoughts": "no, wait", "action": "+"}'
NO_KEY = '{"current number": 3, "thoughts": "the best action: +"}'


def _byte_level(vocab_size: int, corpus: list[str]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>")


def _straddling() -> PreTrainedTokenizerFast:
    """Whole-string tokens (no pre-tokenizer) trained on text where `, "action": "` is common,
    so that one token covers the comma, the quote and the key together."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(
        [f'{{"thoughts": "t{i}", "action": "+"}}' for i in range(500)], trainer
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>")


TOKENIZERS = {
    "byte-level BPE": lambda: load_policy("tiny-llava").tokenizer,
    "character-level": lambda: _byte_level(257, ["x"]),  # the byte alphabet only, no merges
    "straddling": _straddling,
}


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def tokenizer(request):
    return TOKENIZERS[request.param]()


def _split(tokenizer, text: str) -> tuple[list[int], int | None]:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return ids, action_start(tokenizer, ids)


def test_action_span_starts_at_the_action_key(tokenizer):
    ids, start = _split(tokenizer, REPLY)
    assert start is not None
    thought, action = tokenizer.decode(ids[:start]), tokenizer.decode(ids[start:])
    key = REPLY.index('"action"')
    # The action part covers the key; the thought part holds nothing of it, and at most one
    # token (the one straddling the boundary) is given to the action part.
    assert action.endswith('"action": "+"}') and len(thought) <= key
    assert len(tokenizer.decode(ids[: start + 1])) > key
    assert '"action' not in thought


def test_the_last_of_two_action_keys_starts_the_span(tokenizer):
    ids, start = _split(tokenizer, TWICE)
    assert tokenizer.decode(ids[start:]).endswith('"action": "+"}')
    assert '"action": "-"' in tokenizer.decode(ids[:start])


def test_a_reply_without_an_action_key_has_no_span(tokenizer):
    assert _split(tokenizer, NO_KEY)[1] is None


def test_the_straddling_tokenizer_really_straddles():
    tokenizer = _straddling()
    ids = tokenizer(REPLY, add_special_tokens=False).input_ids
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any('"action' in piece and not piece.startswith('"action') for piece in pieces), pieces


def test_logprob_scales_thought_tokens_by_lambda():
    token_logprobs = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, -1.0, 0.0]])
    reply_mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    action_mask = torch.tensor([[False, False, True, True], [False, False, False, False]])
    entropy = torch.tensor([[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 3.0, 0.0]])
    scores = Scores(
        torch.zeros(2), token_logprobs, reply_mask, action_mask, action_mask.any(-1), entropy
    )
    assert scores.logprob(0.5).tolist() == [-1.5 - 7.0, -1.5]
    assert scores.logprob(1.0).tolist() == [-10.0, -3.0]
    assert scores.has_action.tolist() == [True, False]
    assert scores.entropy.tolist() == [1.5, 3.0]  # mean over real reply tokens only


@pytest.fixture(scope="module")
def batch():
    env = rlvlm.make("numberline", image_size=84)
    images, prompts = [], []
    for seed in range(3):
        image, _ = env.reset(seed=seed)
        images.append(image)
        prompts.append(env.unwrapped.task.prompt(env.unwrapped.view(), cot=seed != 1))
    return images, prompts


def _one_step(policy, images, prompts) -> None:
    torch.manual_seed(0)
    replies = policy.generate(images, prompts, max_new_tokens=8, temperature=1.0).reply_ids
    optimizer = torch.optim.AdamW(trainable_parameters(policy), lr=1e-2)
    scores = policy.score(images, prompts, replies)
    loss = -scores.logprob(0.5).mean() + scores.values.square().mean()
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()


def _changed(policy, before) -> set[str]:
    return {n for n, p in policy.named_parameters() if not torch.equal(p.detach(), before[n])}


def test_lora_trains_only_adapters_and_the_value_head(batch):
    policy = load_policy("tiny-llava")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for a user to act on
        add_lora(policy, rank=4, alpha=8)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head.") for n in trainable)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    _one_step(policy, *batch)
    changed = _changed(policy, before)
    assert changed == trainable, sorted(trainable - changed)[:5]


def test_a_fresh_value_head_depends_on_the_seed_alone():
    """Whatever drew from torch's generator before (a vision stage trained in this process, or
    none), the same seed builds the same critic: a cached tower made by ``rlvlm pretrain`` and
    one made inside a run start PPO alike."""

    def critic(seed: int, drawn_before: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(drawn_before)
        torch.rand(drawn_before)
        return load_policy("tiny-llava", seed=seed).value_head.state_dict()

    first, again, other = critic(1, 3), critic(1, 7), critic(2, 3)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not any(torch.equal(first[key], other[key]) for key in first if key.endswith("weight"))


def test_lora_targets_follow_the_chosen_parts():
    policy = load_policy("tiny-llava")
    everything = lora_targets(policy)
    language = lora_targets(policy, ["language"])
    assert any("vision_tower" in n for n in everything)
    assert any("multi_modal_projector" in n for n in everything)
    assert language and not any("vision_tower" in n or "projector" in n for n in language)
    with pytest.raises(ValueError, match="unknown model parts"):
        lora_targets(policy, ["eyes"])


def test_a_frozen_vision_tower_stays_put_in_full_fine_tuning(batch):
    policy = freeze(load_policy("tiny-llava"), ["vision"])
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    _one_step(policy, *batch)
    changed = _changed(policy, before)
    assert not any("vision_tower" in n for n in changed)
    assert any("language_model" in n for n in changed) and any("value_head" in n for n in changed)


@pytest.mark.filterwarnings("error")  # nothing for a user to act on
def test_lora_checkpoint_reloads_identically(batch, tmp_path):
    policy = add_lora(load_policy("tiny-llava"), rank=4, alpha=8).eval()
    _one_step(policy, *batch)
    replies = policy.generate(*batch, max_new_tokens=6, temperature=1.0).reply_ids
    policy.save(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "rlvlm.json").read_text())["lora"] is True
    again = load_policy(tmp_path / "ckpt").eval()
    with torch.no_grad():
        a, b = policy.score(*batch, replies), again.score(*batch, replies)
    torch.testing.assert_close(a.token_logprobs, b.token_logprobs, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-6)


def test_a_save_cut_off_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    policy = load_policy("tiny-llava")
    path = policy.save(tmp_path / "ckpt")
    before = sorted(p.name for p in path.iterdir())

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(policy.processor, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        policy.save(path)
    assert sorted(p.name for p in path.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"], "staging files were left behind"
    load_policy(path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("tiny-gpt", "neither a preset"), ("/nonexistent/checkpoint", "neither a preset")],
)
def test_unknown_presets_and_non_checkpoints_are_clear_errors(spec, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        load_policy(spec)
    with pytest.raises(ValueError, match=r"no config\.json"):
        load_policy(tmp_path)


def test_bf16_autocast_and_gradient_checkpointing_train(batch):
    """Autocast set by hand, so that it is tested on any CPU: where there are no bf16 units,
    ``model.bf16`` leaves it off, but it still runs."""
    policy = enable_gradient_checkpointing(load_policy("tiny-llava"))
    policy.model.train()
    policy.autocast_dtype = torch.bfloat16
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    _one_step(policy, *batch)
    assert any("language_model" in n for n in _changed(policy, before))
    assert policy.value_head.mlp[0].weight.dtype == torch.float32


def test_a_hub_id_that_cannot_be_fetched_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network tries
    with pytest.raises(ValueError, match=r"cannot load 'nobody/no-such-vlm': ") as error:
        load_policy("nobody/no-such-vlm")
    assert "\n" not in str(error.value)


def test_a_prompt_past_the_context_is_one_clear_error_never_a_silent_overflow(batch):
    from rlvlm.models.policy import ContextTooLong
    from rlvlm.sft.data import Demonstration
    from rlvlm.sft.trainer import train_sft

    policy = load_policy("tiny-llava")
    images, prompts = batch
    context = policy.context_length
    assert context == 1024
    fits = len(policy.encode(images[:1], prompts[:1])["input_ids"][0])
    # The prompt fits, the prompt with the longest reply allowed does not.
    with pytest.raises(ContextTooLong, match=f"more than the {context} of tiny-llava") as error:
        policy.generate(images[:1], prompts[:1], max_new_tokens=context - fits + 1)
    assert "\n" not in str(error.value)
    policy.generate(images[:1], prompts[:1], max_new_tokens=4)
    long_prompt = prompts[0] + " and" * context
    with pytest.raises(ContextTooLong):
        policy.score(images[:1], [long_prompt], [[1, 2, 3]])
    # SFT says so before its first step, whichever demonstrations are long: here the longest
    # prompt and the longest reply fit, each beside a short one, but not in one batch.
    n = (context - fits) // 2 + 1
    long_prompt, wordy_reply = prompts[0] + " and" * n, " and" * n
    policy.encode(images[:1], [long_prompt], reply_tokens=2)  # "x" and end-of-sequence
    policy.encode(images[:1], prompts[:1], reply_tokens=n + 1)
    demonstrations = [Demonstration(str(i), images[0], prompts[0], "x") for i in range(7)]
    demonstrations.insert(5, Demonstration("long", images[0], long_prompt, "x"))
    demonstrations.insert(2, Demonstration("wordy", images[0], prompts[0], wordy_reply))
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    with pytest.raises(ContextTooLong):
        train_sft(policy, demonstrations, batch_size=2, progress=False)
    assert not _changed(policy, before)
