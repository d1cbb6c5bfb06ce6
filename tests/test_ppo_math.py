"""GAE and the PPO loss against hand computations, values and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlvlm.rl.advantages import gae, group_advantages, normalize
from rlvlm.rl.loss import ppo_loss

F, T_ = False, True


# ---------------------------------------------------------------- GAE


def _columns(*columns):
    """Arrays (T, N) from one list per environment: easier to read by episode."""
    return np.array(columns).T


def test_gae_matches_a_hand_computation():
    gamma, lam = 0.9, 0.8  # gamma * lambda = 0.72
    # env 0: terminates at t=1 (its next value is ignored), a new episode runs to the
    #        rollout's end at t=3 (not marked truncated: bootstraps all the same).
    # env 1: truncated by the time limit at t=1 (bootstraps from its final observation, 0.9,
    #        not from values[2] = 0.0 of the next episode), then terminates at t=3.
    rewards = _columns([0.0, 1.0, -1.0, 0.5], [0.0, -1.0, 0.0, 1.0])
    values = _columns([0.2, 0.6, 0.1, 0.3], [0.5, 0.4, 0.0, 0.7])
    next_values = _columns([0.6, 123.0, 0.3, 0.4], [0.4, 0.9, 0.7, 55.0])
    terminated = _columns([F, T_, F, F], [F, F, F, T_])
    truncated = _columns([F, F, F, F], [F, T_, F, F])

    a0_3 = 0.5 + 0.9 * 0.4 - 0.3  # 0.56: the rollout's end bootstraps
    a0_2 = (-1.0 + 0.9 * 0.3 - 0.1) + 0.72 * a0_3  # -0.83 + 0.4032 = -0.4268
    a0_1 = 1.0 - 0.6  # 0.4: terminated, no bootstrap, nothing carried in from t=2
    a0_0 = (0.0 + 0.9 * 0.6 - 0.2) + 0.72 * a0_1  # 0.34 + 0.288 = 0.628
    a1_3 = 1.0 - 0.7  # 0.3: terminated
    a1_2 = (0.0 + 0.9 * 0.7 - 0.0) + 0.72 * a1_3  # 0.63 + 0.216 = 0.846
    a1_1 = -1.0 + 0.9 * 0.9 - 0.4  # -0.59: truncated bootstraps, carries nothing in
    a1_0 = (0.0 + 0.9 * 0.4 - 0.5) + 0.72 * a1_1  # -0.14 - 0.4248 = -0.5648
    expected = _columns([a0_0, a0_1, a0_2, a0_3], [a1_0, a1_1, a1_2, a1_3])
    np.testing.assert_allclose(
        expected, _columns([0.628, 0.4, -0.4268, 0.56], [-0.5648, -0.59, 0.846, 0.3]), atol=1e-12
    )

    advantages, returns = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    assert advantages.shape == returns.shape == (4, 2)
    assert advantages.dtype == returns.dtype == np.float32
    np.testing.assert_allclose(advantages, expected, atol=1e-6)
    np.testing.assert_allclose(returns, expected + values, atol=1e-6)

    # Marking the rollout's last step truncated changes nothing: nothing flows in past it.
    truncated[-1] = True
    again = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    np.testing.assert_array_equal(again[0], advantages)


# ------------------------------------------------------- GRPO and GiGPO

# Four environments in two groups of two (envs 0-1, 2-3), four steps each. The rollout's
# end marks every episode still running at the last step truncated, as ``collect`` does.
#   env 0: episode 0 = t0-t1, wins 1 (return 1); episode 1 = t2-t3, cut off by the rollout.
#   env 1: episode 0 = t0, loses (-1); episode 1 = t1-t2, wins (1); episode 2 = t3, cut off.
#   env 2: episode 0 = t0-t2, cut by the game's step limit at t2 (return 0); t3 cut off.
#   env 3: four one-step episodes, returns 1, 0, -1, 1 (the last one ends at t3: it counts).
GROUP_REWARDS = _columns([0, 1, 0, 0], [-1, 0, 1, 0], [0, 0, 0, 0], [1, 0, -1, 1])
GROUP_TERMINATED = _columns([F, T_, F, F], [T_, F, T_, F], [F, F, F, F], [T_, T_, T_, T_])
GROUP_TRUNCATED = _columns([F, F, F, T_], [F, F, F, T_], [F, F, T_, T_], [F, F, F, F])
#: Each step's observation. A group's first episodes start from one deal ("deal 0", "deal 1");
#: env 1's second episode starts in a picture equal to deal 0's, but in another episode group.
GROUP_STATES = _columns(
    ["deal 0", "a", "b", "c"],
    ["deal 0", "deal 0", "e", "f"],
    ["deal 1", "g", "h", "i"],
    ["deal 1", "j", "k", "l"],
)
R2 = 1 / math.sqrt(2)  # (x - mean) / std for a group of two different values: -R2 and R2


def _group(**kwargs):
    return group_advantages(GROUP_REWARDS, GROUP_TERMINATED, GROUP_TRUNCATED, 2, **kwargs)


def test_grpo_matches_a_hand_computation():
    # Episode groups with two finished members: (group 0, episode 0): returns 1 and -1;
    # (group 1, episode 0): returns 0 and 1. Every other episode group has one member (env 0's
    # and env 2's second episodes were cut off), and cut-off steps get 0.
    expected = _columns([R2, R2, 0, 0], [-R2, 0, 0, 0], [-R2, -R2, -R2, 0], [R2, 0, 0, 0])
    np.testing.assert_allclose(_group(), expected, atol=1e-6)
    # Dr. GRPO: the difference from the group's mean, unscaled (means 0 and 0.5)
    expected = _columns([1, 1, 0, 0], [-1, 0, 0, 0], [-0.5, -0.5, -0.5, 0], [0.5, 0, 0, 0])
    np.testing.assert_allclose(_group(scale=False), expected, atol=1e-6)


def test_gigpo_adds_step_groups_of_identical_states_within_an_episode_group():
    gamma, weight = 0.5, 0.5
    # Step groups of two: "deal 0" (env 0 goes on to return 0 + 0.5 * 1 = 0.5, env 1 -1)
    # and "deal 1" (env 2: 0, env 3: 1); each gets -R2 and R2 on top of the episode level.
    # Env 1's "deal 0" at t1 belongs to another episode group: alone, it adds nothing.
    step = _columns([R2, 0, 0, 0], [-R2, 0, 0, 0], [-R2, 0, 0, 0], [R2, 0, 0, 0])
    expected = _group() + weight * step
    got = _group(states=GROUP_STATES, gamma=gamma, step_weight=weight)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0, 0] == pytest.approx(1.5 * R2)


def test_group_advantages_need_whole_groups():
    with pytest.raises(ValueError, match="do not form groups of 3"):
        group_advantages(GROUP_REWARDS, GROUP_TERMINATED, GROUP_TRUNCATED, 3)


def test_gae_inputs_are_not_modified_and_terminated_next_value_can_be_nan():
    rewards, values = np.ones((3, 2)), np.zeros((3, 2))
    next_values = np.array([[0.0, 0.0], [0.0, 0.0], [np.nan, 1.0]])
    terminated = np.array([[F, F], [F, F], [T_, F]])
    truncated = np.zeros((3, 2), bool)
    copies = [a.copy() for a in (rewards, values, next_values, terminated, truncated)]
    advantages, _ = gae(rewards, values, next_values, terminated, truncated, 0.9, 0.95)
    assert np.isfinite(advantages).all()
    for before, after in zip(
        copies, (rewards, values, next_values, terminated, truncated), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def _random_rollout(seed: int, steps: int = 6, envs: int = 3):
    rng = np.random.default_rng(seed)
    shape = (steps, envs)
    return (
        rng.normal(size=shape),
        rng.normal(size=shape),
        rng.normal(size=shape),
        rng.random(shape) < 0.2,
        rng.random(shape) < 0.2,
    )


@pytest.mark.parametrize("seed", range(3))
def test_gae_lambda_zero_gives_one_step_td_errors(seed):
    rewards, values, next_values, terminated, truncated = _random_rollout(seed)
    advantages, returns = gae(rewards, values, next_values, terminated, truncated, 0.9, 0.0)
    td = rewards + 0.9 * np.where(terminated, 0.0, next_values) - values
    np.testing.assert_allclose(advantages, td, atol=1e-5)
    np.testing.assert_allclose(
        returns, rewards + 0.9 * np.where(terminated, 0.0, next_values), atol=1e-5
    )


def test_gae_gamma_zero_gives_reward_minus_value():
    rewards, values, next_values, terminated, truncated = _random_rollout(0)
    advantages, returns = gae(rewards, values, next_values, terminated, truncated, 0.0, 0.95)
    np.testing.assert_allclose(advantages, rewards - values, atol=1e-5)
    np.testing.assert_allclose(returns, rewards, atol=1e-5)


def test_gae_lambda_one_gamma_one_gives_monte_carlo_returns():
    # env 0: one episode of 4 steps that terminates: returns are plain sums of rewards.
    # env 1: terminates at t=1, then a new episode truncated at t=3 with final value 10.
    rewards = _columns([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    values = _columns([0.5, -1.0, 2.0, 7.0], [0.1, 0.2, 0.3, 0.4])
    next_values = _columns([-1.0, 2.0, 7.0, 0.0], [0.2, 0.0, 0.4, 10.0])
    terminated = _columns([F, F, F, T_], [F, T_, F, F])
    truncated = _columns([F, F, F, F], [F, F, F, T_])
    advantages, returns = gae(rewards, values, next_values, terminated, truncated, 1.0, 1.0)
    monte_carlo = _columns([10.0, 9.0, 7.0, 4.0], [3.0, 2.0, 3.0 + 4.0 + 10.0, 4.0 + 10.0])
    np.testing.assert_allclose(returns, monte_carlo, atol=1e-6)
    np.testing.assert_allclose(advantages, monte_carlo - values, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    data=hnp.arrays(np.float64, (7, 5, 3), elements=st.floats(-10, 10)),
    dones=hnp.arrays(np.int8, (7, 5), elements=st.integers(0, 2)),
    cut=st.integers(0, 5),
    gamma=st.floats(0, 1),
    lam=st.floats(0, 1),
)
def test_gae_never_carries_across_an_episode_boundary(data, dones, cut, gamma, lam):
    """Whatever follows an episode's end (terminated or truncated) leaves every advantage up
    to it unchanged, and each environment's column is computed on its own."""
    rewards, values, next_values = data[..., 0], data[..., 1], data[..., 2]
    terminated, truncated = dones == 1, dones == 2
    terminated[cut, 0] = True  # env 0 ends at `cut`, by termination
    truncated[cut, 1] = True  # env 1 ends at `cut`, by truncation
    advantages, _ = gae(rewards, values, next_values, terminated, truncated, gamma, lam)

    changed = [a.copy() for a in (rewards, values, next_values)]
    for a in changed:
        a[cut + 1 :] += 3.0
    after = gae(*changed, terminated, truncated, gamma, lam)[0]
    np.testing.assert_array_equal(advantages[: cut + 1, :2], after[: cut + 1, :2])

    alone = gae(
        rewards[:, 1:2],
        values[:, 1:2],
        next_values[:, 1:2],
        terminated[:, 1:2],
        truncated[:, 1:2],
        gamma,
        lam,
    )[0]
    np.testing.assert_array_equal(alone[:, 0], advantages[:, 1])


@pytest.mark.parametrize(
    "shapes",
    [
        [(4, 2), (4, 2), (4, 2), (4, 2), (4, 3)],  # one array of another width
        [(4, 2), (3, 2), (4, 2), (4, 2), (4, 2)],  # one of another length
        [(4,), (4,), (4,), (4,), (4,)],  # 1-D: the env axis is missing
        [(4, 2, 1)] * 5,
    ],
)
def test_gae_rejects_bad_shapes(shapes):
    arrays = [np.zeros(s) for s in shapes[:3]] + [np.zeros(s, bool) for s in shapes[3:]]
    with pytest.raises(ValueError, match=r"one shape \(T steps, N envs\)"):
        gae(*arrays, 0.9, 0.95)


@pytest.mark.parametrize(("gamma", "lam"), [(1.1, 0.95), (0.9, -0.1)])
def test_gae_rejects_coefficients_outside_unit_interval(gamma, lam):
    arrays = [np.zeros((2, 2))] * 3 + [np.zeros((2, 2), bool)] * 2
    with pytest.raises(ValueError, match="gamma and gae_lambda"):
        gae(*arrays, gamma, lam)


def test_normalize():
    advantages = torch.tensor([1.0, 2.0, 3.0, 10.0])
    before = advantages.clone()
    out = normalize(advantages)
    assert torch.equal(advantages, before)
    assert out.mean().abs() < 1e-6 and (out.std() - 1).abs() < 1e-6
    assert torch.equal(normalize(torch.tensor([4.0])), torch.tensor([0.0]))
    assert torch.equal(normalize(torch.full((5,), 2.0)), torch.zeros(5))  # no spread: no NaN


# ---------------------------------------------------------------- PPO loss


def _leaf(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype, requires_grad=True)


def _batch(logprobs, old_logprobs, advantages, values=None, old_values=None, returns=None):
    """Tensors for ppo_loss; the value part defaults to zero error."""
    b = len(logprobs)
    values = [0.0] * b if values is None else values
    return dict(
        logprobs=_leaf(logprobs),
        old_logprobs=torch.tensor(old_logprobs, dtype=torch.float64),
        advantages=torch.tensor(advantages, dtype=torch.float64),
        values=_leaf(values),
        old_values=torch.tensor(values if old_values is None else old_values, dtype=torch.float64),
        returns=torch.tensor(values if returns is None else returns, dtype=torch.float64),
    )


def test_ratio_one_gives_minus_mean_advantage():
    batch = _batch([-3.0, -1.5, -0.2], [-3.0, -1.5, -0.2], [1.0, -2.0, 4.0])
    out = ppo_loss(**batch, clip_coef=0.1, vf_coef=0.5)
    assert out.policy_loss.item() == pytest.approx(-1.0)
    assert out.approx_kl.item() == 0.0 and out.clipfrac.item() == 0.0
    assert out.value_loss.item() == 0.0 and out.entropy.item() == 0.0
    assert out.loss.item() == pytest.approx(-1.0)
    assert all(x.dim() == 0 for x in out)
    assert not out.approx_kl.requires_grad and not out.clipfrac.requires_grad
    out.loss.backward()
    # d/d logprob of -A * ratio at ratio 1 is -A / B.
    torch.testing.assert_close(batch["logprobs"].grad, torch.tensor([-1.0, 2.0, -4.0]).double() / 3)


def test_policy_clipping_on_both_sides():
    clip = 0.2
    ratios = [1.5, 0.5, 0.5, 1.5, 1.1]
    advantages = [1.0, -1.0, 1.0, -1.0, 2.0]
    old = [-1.0, -2.0, -0.5, -3.0, -1.0]
    batch = _batch([o + math.log(r) for o, r in zip(old, ratios, strict=True)], old, advantages)
    out = ppo_loss(**batch, clip_coef=clip, vf_coef=0.5)

    per_sample = [
        -1.0 * 1.2,  # A > 0, ratio above 1 + clip: clipped to 1.2, no gradient
        1.0 * 0.8,  # A < 0, ratio below 1 - clip: clipped to 0.8, no gradient
        -1.0 * 0.5,  # A > 0, ratio below 1 - clip: the unclipped (worse) term, gradient kept
        1.0 * 1.5,  # A < 0, ratio above 1 + clip: the unclipped (worse) term, gradient kept
        -2.0 * 1.1,  # inside the clip range
    ]
    assert out.policy_loss.item() == pytest.approx(sum(per_sample) / 5)  # (-1.2+0.8-0.5+1.5-2.2)/5
    assert out.clipfrac.item() == pytest.approx(4 / 5)
    kl = sum((r - 1) - math.log(r) for r in ratios) / 5
    assert out.approx_kl.item() == pytest.approx(kl)

    (grad,) = torch.autograd.grad(out.policy_loss, batch["logprobs"])
    # d(-A * ratio)/d logprob = -A * ratio, over B = 5.
    expected = torch.tensor([0.0, 0.0, -1.0 * 0.5, 1.0 * 1.5, -2.0 * 1.1], dtype=torch.float64) / 5
    torch.testing.assert_close(grad, expected)


def test_value_clipping_takes_the_larger_error():
    # Both values moved 0.5 or more from old_values = 0, beyond vf_clip = 0.2.
    # Sample 0: value 0.5, return 1: clipped value 0.2 is further off (0.64 > 0.25), so the
    #           clipped error counts and its gradient with respect to the value is 0.
    # Sample 1: value 2, return 1: the unclipped error (1.0 > 0.64) counts, gradient kept.
    batch = _batch(
        [0.0, 0.0],
        [0.0, 0.0],
        [0.0, 0.0],
        values=[0.5, 2.0],
        old_values=[0.0, 0.0],
        returns=[1.0, 1.0],
    )
    out = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5)
    assert out.value_loss.item() == pytest.approx(0.5 * (0.64 + 1.0) / 2)  # 0.41
    assert out.loss.item() == pytest.approx(0.5 * 0.41)
    (grad,) = torch.autograd.grad(out.value_loss, batch["values"])
    # d(0.5 * mean((v - R)^2))/dv = (v - R) / B
    torch.testing.assert_close(grad, torch.tensor([0.0, 1.0 / 2], dtype=torch.float64))

    same = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5, vf_clip=0.2)
    assert same.value_loss.item() == out.value_loss.item()  # vf_clip defaults to clip_coef
    wide = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5, vf_clip=1.0)
    assert wide.value_loss.item() == pytest.approx(0.5 * (0.25 + 1.0) / 2)  # nothing clipped
    plain = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5, clip_vloss=False)
    assert plain.value_loss.item() == pytest.approx(0.5 * (0.25 + 1.0) / 2)  # 0.3125


def test_entropy_bonus_lowers_the_loss():
    batch = _batch([-1.0, -2.0], [-1.2, -1.9], [0.5, -0.3], values=[0.3, 0.1], returns=[1.0, 0.0])
    entropy = _leaf([2.0, 4.0])
    without = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5)
    with_bonus = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5, entropy=entropy, ent_coef=0.01)
    assert with_bonus.entropy.item() == pytest.approx(3.0)
    assert with_bonus.loss.item() == pytest.approx(without.loss.item() - 0.01 * 3.0)
    assert with_bonus.loss.item() == pytest.approx(
        with_bonus.policy_loss.item() - 0.01 * 3.0 + 0.5 * with_bonus.value_loss.item()
    )
    (grad,) = torch.autograd.grad(with_bonus.loss, entropy)
    torch.testing.assert_close(grad, torch.full((2,), -0.01 / 2, dtype=torch.float64))


def test_ent_coef_without_entropy_is_an_error():
    # The reference implementation accepted an entropy coefficient and ignored it.
    with pytest.raises(ValueError, match="needs the entropy"):
        ppo_loss(**_batch([0.0], [0.0], [1.0]), clip_coef=0.2, vf_coef=0.5, ent_coef=0.01)


def test_masked_samples_change_nothing():
    kept = _batch(
        [-1.0, -2.0],
        [-1.2, -1.9],
        [0.5, -0.3],
        values=[0.3, 0.1],
        old_values=[0.0, 0.2],
        returns=[1.0, 0.0],
    )
    kept_entropy = _leaf([2.0, 4.0])
    # Extreme but finite values in the masked samples: a ratio of exp(80), a value of 1e30
    # whose squared error overflows float32 and float64 alike.
    full = _batch(
        [-1.0, 79.0, -2.0, -5.0],
        [-1.2, -1.0, -1.9, 300.0],
        [0.5, 1e30, -0.3, -1e30],
        values=[0.3, 1e200, 0.1, -1e200],
        old_values=[0.0, -1e200, 0.2, 0.0],
        returns=[1.0, 1e200, 0.0, 3.0],
    )
    full_entropy = _leaf([2.0, 1e30, 4.0, 7.0])
    mask = torch.tensor([T_, F, T_, F])
    kw = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01)
    expected = ppo_loss(**kept, entropy=kept_entropy, **kw)
    out = ppo_loss(**full, entropy=full_entropy, mask=mask, **kw)
    for name, a, b in zip(out._fields, out, expected, strict=True):
        assert a.item() == pytest.approx(b.item()), name

    expected.loss.backward()
    out.loss.backward()
    for name in ("logprobs", "values"):
        grad = full[name].grad
        torch.testing.assert_close(grad[mask], kept[name].grad)
        assert (grad[~mask] == 0).all(), name
    torch.testing.assert_close(full_entropy.grad[mask], kept_entropy.grad)
    assert (full_entropy.grad[~mask] == 0).all()


def test_all_false_mask_gives_zero_and_finite_gradients():
    batch = _batch([-1.0, 50.0], [-1.2, -1.0], [0.5, 1e6], values=[0.3, 1e6], returns=[1.0, -1e6])
    entropy = _leaf([1.0, 2.0])
    out = ppo_loss(
        **batch,
        clip_coef=0.2,
        vf_coef=0.5,
        entropy=entropy,
        ent_coef=0.01,
        mask=torch.zeros(2, dtype=torch.bool),
    )
    assert all(x.item() == 0.0 for x in out), out
    out.loss.backward()
    for leaf in (batch["logprobs"], batch["values"], entropy):
        assert torch.equal(leaf.grad, torch.zeros(2, dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(
    data=hnp.arrays(np.float64, (6, 6), elements=st.floats(-3, 3)),
    mask=hnp.arrays(np.bool_, 6),
    clip=st.floats(0.05, 0.5),
)
def test_masked_loss_equals_the_loss_of_the_kept_samples(data, mask, clip):
    def tensors(rows):
        names = ("logprobs", "old_logprobs", "advantages", "values", "old_values", "returns")
        return {name: torch.tensor(rows[:, i]) for i, name in enumerate(names)}

    kw = dict(clip_coef=clip, vf_coef=0.5)
    out = ppo_loss(**tensors(data), mask=torch.tensor(mask), **kw)
    if mask.any():
        expected = ppo_loss(**tensors(data[mask]), **kw)
    else:
        expected = type(out)(*(torch.zeros((), dtype=torch.float64) for _ in out))
    for name, a, b in zip(out._fields, out, expected, strict=True):
        assert a.item() == pytest.approx(b.item(), rel=1e-9, abs=1e-12), name


def test_inputs_are_not_modified_and_rollout_tensors_get_no_gradient():
    batch = _batch([-1.0, -2.0], [-1.5, -1.9], [0.5, -0.3], values=[0.3, 1.1], returns=[1.0, 0.0])
    # Rollout tensors that (wrongly) still carry a graph must not receive gradients.
    for name in ("old_logprobs", "advantages", "old_values", "returns"):
        batch[name].requires_grad_(True)
    copies = {name: t.detach().clone() for name, t in batch.items()}
    mask = torch.tensor([T_, F])
    out = ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5, mask=mask)
    out.loss.backward()
    for name, t in batch.items():
        assert torch.equal(t.detach(), copies[name]), name
    assert torch.equal(mask, torch.tensor([T_, F]))
    for name in ("old_logprobs", "advantages", "old_values", "returns"):
        assert batch[name].grad is None, name


@pytest.mark.parametrize("bad", ["column", "length", "mask_dtype"])
def test_ppo_loss_rejects_bad_shapes(bad):
    batch = _batch([0.0, 0.0], [0.0, 0.0], [1.0, 1.0])
    mask = None
    if bad == "column":
        batch["returns"] = batch["returns"].unsqueeze(1)  # (B, 1) would broadcast to (B, B)
    elif bad == "length":
        batch["advantages"] = torch.zeros(3, dtype=torch.float64)
    else:
        mask = torch.ones(2)
    with pytest.raises(ValueError, match=r"ppo_loss needs|mask must be"):
        ppo_loss(**batch, clip_coef=0.2, vf_coef=0.5, mask=mask)
