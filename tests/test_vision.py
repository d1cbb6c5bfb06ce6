"""Vision pretraining: the tower learns to read, the language model is untouched, the cache
reuses a trained tower."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rlvlm
from rlvlm.models import PRESETS, vision
from rlvlm.models.policy import load_policy
from rlvlm.models.vision import (
    VisionRecipe,
    cached_vision_checkpoint,
    image_features,
    pretrain_vision,
)

PRESET = "tiny-llava"
#: Chance is 1/6 per label; the shared NumberLine reader (``numberline_reader``: 100 steps of
#: the default recipe at half its batch, about 12 s on 2 cores) read 1.0 on every label with
#: seeds 0, 1 and 2.
MIN_LABEL_ACCURACY = 0.9
TINY_RECIPE = VisionRecipe(batch_size=4, held_out_images=4)


def test_numberline_reading_is_learnt(numberline_reader):
    _, report = numberline_reader
    accuracy = report["accuracy"]["numberline"]
    assert set(accuracy["per_label"]) == {"target", "current"}
    assert accuracy["chance"] == pytest.approx(1 / 6)
    for label, value in accuracy["per_label"].items():
        assert value >= MIN_LABEL_ACCURACY, (label, report)
    assert accuracy["held_out_images"] == VisionRecipe().held_out_images


def test_only_vision_and_projector_change(numberline_reader):
    policy = load_policy(numberline_reader[0])
    fresh = load_policy(PRESET, seed=0)
    trained = dict(policy.model.named_parameters())
    changed = {"vision": 0, "projector": 0, "language": 0}
    for name, before in fresh.model.named_parameters():
        if not torch.equal(before, trained[name]):
            changed[policy.family.part_of(name)] += 1
    assert changed["language"] == 0
    assert changed["vision"] > 0 and changed["projector"] > 0
    assert all(p.requires_grad for p in policy.model.parameters())  # nothing left frozen


def test_cache_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVLM_CACHE", str(tmp_path))
    calls = []
    train = vision.pretrain_vision

    def counting(*args, **kwargs):
        calls.append(args)
        return train(*args, **kwargs)

    monkeypatch.setattr(vision, "pretrain_vision", counting)
    path, report = cached_vision_checkpoint(
        PRESET, ["numberline"], 2, progress=False, recipe=TINY_RECIPE
    )
    assert len(calls) == 1
    assert path.parent == tmp_path / "vision" and path.is_dir()
    assert json.loads(path.with_name(path.name + ".json").read_text()) == report
    again, same_report = cached_vision_checkpoint(
        PRESET, ("numberline",), 2, progress=False, recipe=TINY_RECIPE
    )
    assert len(calls) == 1 and again == path and same_report == report
    policy = load_policy(path)
    assert policy.image_size == 84 and policy.base == str(path.resolve())
    other = vision.cache_key(PRESET, ["numberline"], 3, 0, TINY_RECIPE)
    assert other != path.name  # the budget is part of the key


def test_states_never_end_the_episode_and_keep_their_label_layout():
    rng = np.random.default_rng(0)
    for game in ("ezpoints", "points24", "blackjack"):
        states = vision.GameStates(game, 84)
        lengths = set()
        for seed in range(30):
            view = states.state(seed, rng)
            assert len(states.labels(view)) == len(states.num_classes)
            lengths.add(len(view[1]))  # the formula, or the player's hand
        assert len(lengths) > 2, (game, lengths)  # random moves vary the state


def test_shift_and_schedule():
    image = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    moved = vision.shift_image(image, 2, -1)
    assert moved.shape == image.shape
    assert (moved[0, 2:] == image[1, :3]).all() and (moved[:, 0] == moved[:, 1]).all()
    assert vision.shift_image(image, 0, 0) is image
    recipe = VisionRecipe()
    assert vision.shift_at(0, 100, recipe) == 0
    assert vision.shift_at(99, 100, recipe) == recipe.max_shift
    assert vision._schedule(0, 100, 20) == pytest.approx(1 / 20)
    assert vision._schedule(99, 100, 20) < 0.01


def test_unknown_inputs_are_named():
    with pytest.raises(ValueError, match="unknown preset"):
        pretrain_vision("no-such-preset", ["numberline"], 1)
    with pytest.raises(ValueError, match="unknown game"):
        vision.cache_key(PRESET, ["chess"], 1, 0, VisionRecipe())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_image_features_are_one_row_per_image_for_every_family(preset):
    policy = load_policy(preset)
    env = rlvlm.make("numberline", image_size=policy.image_size)
    images = [env.reset(seed=seed)[0] for seed in range(3)]
    with torch.no_grad():
        batch, single = image_features(policy, images), image_features(policy, images[1:2])
    assert batch.shape[0] == 3 and batch.shape[1:] == single.shape[1:]
    torch.testing.assert_close(batch[1], single[0], rtol=0, atol=1e-5)
