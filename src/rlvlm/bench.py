"""Throughput figures, each printed beside a baseline measured in the same run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter

from rlvlm.games import CARD_GAMES, make, render

#: Steps per second each game must reach on a 2-core CPU, rendering included.
ENV_TARGETS = {"numberline": 5000, "ezpoints": 2000, "points24": 2000, "blackjack": 2000}


def env_steps_per_second(game: str, seconds: float, uncached: bool = False, seed: int = 0) -> float:
    """Random-action steps per second of one env in this process, resets included.

    ``uncached`` clears every font, sprite and picture cache before each step, which is what
    an env costs that loads its fonts and draws its cards afresh every time.
    """
    env = make(game)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps, start = 0, perf_counter()
    while (elapsed := perf_counter() - start) < seconds:
        if uncached:
            render.clear_caches()
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    env.close()
    return steps / elapsed


def bench_envs(seconds: float = 2.0, games: list[str] | None = None) -> list[dict[str, float]]:
    """Measure every game cached and uncached, printing a row as each one finishes."""
    print(f"{'game':<12}{'steps/s':>10}{'uncached':>11}{'speed-up':>10}{'target':>9}")
    rows = []
    for game in games or list(CARD_GAMES):
        fast = env_steps_per_second(game, seconds)
        slow = env_steps_per_second(game, seconds, uncached=True)
        target = ENV_TARGETS.get(game, 0)
        verdict = "ok" if fast >= target else "BELOW"
        print(
            f"{game:<12}{fast:>10,.0f}{slow:>11,.0f}{fast / slow:>9.0f}x{target:>9,} {verdict}",
            flush=True,
        )
        rows.append({"game": game, "steps_per_s": fast, "uncached_steps_per_s": slow})
    return rows


def bench_rollout(
    preset: str | None = None,
    envs: int = 8,
    rounds: int = 5,
    max_new_tokens: int = 64,
    bf16: bool = True,
) -> dict[str, float]:
    """Replies per second for ``envs`` NumberLine states, each with its log-probs and value:
    batched generation, which records them while it samples, beside the reference loop that
    generates one reply and then scores it with a second forward pass, one environment at a
    time. Both run at the precision training uses (bf16 autocast where the hardware has it).
    Rounds alternate, and medians are reported."""
    import torch

    from rlvlm.models import DEFAULT_PRESET, load_policy
    from rlvlm.models.training import set_precision

    torch.manual_seed(0)
    policy = set_precision(load_policy(preset or DEFAULT_PRESET), bf16)
    env = make("numberline", image_size=policy.image_size)
    images, prompts = [], []
    for seed in range(envs):
        image, _ = env.reset(seed=seed)
        images.append(image)
        prompts.append(env.unwrapped.task.prompt(env.unwrapped.view()))

    def generate(batch: slice) -> list[list[int]]:
        return policy.generate(
            images[batch], prompts[batch], max_new_tokens=max_new_tokens, temperature=1.0
        ).reply_ids

    def batched() -> int:
        return sum(len(reply) for reply in generate(slice(0, envs)))

    def one_at_a_time() -> int:
        tokens = 0
        for i in range(envs):
            replies = generate(slice(i, i + 1))
            with torch.no_grad():  # the reference's second pass (generation recorded the same)
                policy.score(images[i : i + 1], prompts[i : i + 1], replies)
            tokens += len(replies[0])
        return tokens

    def timed(rollout: Callable[[], int]) -> tuple[float, int]:
        start = perf_counter()
        tokens = rollout()
        return perf_counter() - start, tokens

    generate(slice(0, 1))  # warm-up
    runs: dict[str, list[tuple[float, int]]] = {"batched": [], "one at a time": []}
    for _ in range(rounds):
        runs["batched"].append(timed(batched))
        runs["one at a time"].append(timed(one_at_a_time))
    figures = {}
    print(f"{'mode':<14}{'replies/s':>10}{'tokens/s':>10}")
    for mode, timings in runs.items():
        seconds = statistics.median(run[0] for run in timings)
        tokens = statistics.median(run[1] for run in timings)
        figures[mode] = envs / seconds
        print(f"{mode:<14}{envs / seconds:>10.1f}{tokens / seconds:>10.0f}")
    ratio = figures["batched"] / figures["one at a time"]
    # Each round times both modes back to back, so its ratio shows how noisy the machine is.
    per_round = sorted(slow[0] / fast[0] for fast, slow in zip(*runs.values(), strict=True))
    print(
        f"batched is {ratio:.1f}x faster ({per_round[0]:.1f}x to {per_round[-1]:.1f}x over "
        f"{rounds} rounds; {preset or DEFAULT_PRESET}, {envs} envs, {max_new_tokens} new "
        f"tokens at most, {'bf16 autocast' if policy.autocast_dtype else 'float32'}; target 5x)"
    )
    return {
        "batched": figures["batched"],
        "one_at_a_time": figures["one at a time"],
        "ratio": ratio,
    }


def bench_alfworld(episodes: int = 5, split: str = "valid_unseen") -> dict[str, float]:
    """Median seconds of ALFWorld's first reset of a seed (generating a game and checking that
    the expert wins it, then loading it), of a reset of a game already made, and of a step,
    over ``episodes`` episodes that the expert plays."""
    env = make("alfworld", split=split)
    game = env.unwrapped
    first, again, steps = [], [], []
    for seed in range(episodes):
        for times in (first, again):
            start = perf_counter()
            env.reset(seed=seed)
            times.append(perf_counter() - start)
        done = False
        while not done:
            start = perf_counter()
            _, _, terminated, truncated, _ = env.step(game.task.oracle_action(game.view()))
            steps.append(perf_counter() - start)
            done = terminated or truncated
    env.close()
    row = {
        "new_game_reset_s": statistics.median(first),
        "reset_s": statistics.median(again),
        "step_s": statistics.median(steps),
    }
    print(f"{'new game reset':>15}{'reset':>9}{'step':>9}  ({episodes} {split} episodes)")
    print(f"{row['new_game_reset_s']:>14.2f}s{row['reset_s']:>8.2f}s{row['step_s'] * 1000:>7.0f}ms")
    return row


def bench_train(
    model: str | None = None, config_name: str = "tiny/numberline", overrides: Sequence[str] = ()
) -> dict[str, float]:
    """One PPO update of a config (the main job's by default): its rollout, then its
    optimisation timed beside the reference's way of optimising the same rollout from the
    same weights: one reply per forward pass (minibatch 1, gradients accumulated to the same
    optimizer steps), in float32. Each way is warmed up by one pass before it is timed."""
    import copy
    import dataclasses
    import tempfile

    import torch

    from rlvlm.config import load_config
    from rlvlm.models import load_policy
    from rlvlm.rl.trainer import PPOTrainer
    from rlvlm.train import prepare

    config = load_config(config_name, list(overrides))
    ppo = config.ppo
    reference_ppo = dataclasses.replace(
        ppo, minibatch_size=1, grad_accum=ppo.minibatch_size * ppo.grad_accum
    )
    reference_config = dataclasses.replace(
        config, ppo=reference_ppo, model=dataclasses.replace(config.model, bf16=False)
    )
    torch.manual_seed(config.seed)
    policy = load_policy(model or config.model.name, seed=config.seed)
    start = copy.deepcopy(policy)
    ours = prepare(policy, config)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = PPOTrainer(config, ours, Path(scratch) / "ours", progress=False)
        buffer, stats = _rollout(trainer)
        reference_buffer = copy.deepcopy(buffer)
        _warm_up(trainer, buffer)
        seconds = {"ours": trainer._optimize(buffer, stats)["time/train_seconds"]}
        reference = prepare(start, reference_config).eval()
        reference_trainer = PPOTrainer(
            reference_config, reference, Path(scratch) / "reference", progress=False
        )
        _warm_up(reference_trainer, reference_buffer)
        reference_metrics = reference_trainer._optimize(reference_buffer, stats)
        seconds["reference"] = reference_metrics["time/train_seconds"]
    transitions = buffer.steps * buffer.num_envs
    precision = "bf16 autocast" if ours.autocast_dtype is not None else "float32"
    print(
        f"one update of {config_name}: {transitions} transitions, {ppo.epochs} epochs, "
        f"model {model or config.model.name}"
    )
    print(f"rollout       {stats.seconds:>7.1f} s  ({transitions / stats.seconds:.1f} steps/s)")
    print(f"{'optimisation':<14}{'seconds':>7}{'samples/s':>11}  how")
    rows = {
        "ours": f"minibatch {ppo.minibatch_size} x accumulation {ppo.grad_accum}, {precision}",
        "reference": f"minibatch 1 x accumulation {reference_ppo.grad_accum}, float32",
    }
    for name, how in rows.items():
        rate = transitions * (ppo.epochs + 1) / seconds[name]  # the scoring pass and the epochs
        print(f"{name:<14}{seconds[name]:>7.1f}{rate:>11.1f}  {how}")
    ratio = seconds["reference"] / seconds["ours"]
    print(f"optimisation is {ratio:.1f}x faster than the reference's way (target 5x)")
    return {
        "rollout_seconds": stats.seconds,
        "seconds": seconds["ours"],
        "reference_seconds": seconds["reference"],
        "ratio": ratio,
    }


#: What ``bench scale`` cuts from the paper's update on a CPU, where a full one would take
#: hours at 3B: one step of each environment, shorter replies, one epoch, and 8 minibatches
#: accumulated into the one optimiser step. The time of a minibatch gives the full update's.
SCALE_ON_CPU = ("ppo.steps_per_env=1", "ppo.max_new_tokens=32", "ppo.epochs=1", "ppo.grad_accum=8")


def bench_scale(
    arch: str,
    config_name: str = "paper/numberline",
    overrides: Sequence[str] = (),
    json_path: Path | None = None,
) -> dict[str, float]:
    """A real checkpoint's architecture with random weights (nothing downloaded) and the
    paper config's LoRA, bf16 and gradient checkpointing: a rollout of its environments and
    one PPO update, with the parameters, the peak memory, generation tokens/s, and the
    seconds of a minibatch and of the update. Under ``accelerate launch`` every process
    runs its share, as in training (DeepSpeed's ZeRO included)."""
    import resource
    import tempfile

    import torch
    from accelerate import Accelerator

    from rlvlm.config import load_config
    from rlvlm.models.architectures import build_architecture
    from rlvlm.rl.trainer import PPOTrainer
    from rlvlm.train import prepare

    on_gpu = torch.cuda.is_available()
    cuts = () if on_gpu else SCALE_ON_CPU
    config = load_config(config_name, [*cuts, *overrides])
    ppo = config.ppo
    accelerator = Accelerator(cpu=not on_gpu)
    say = accelerator.print
    start = perf_counter()
    policy = build_architecture(arch, device=accelerator.device, seed=config.seed)
    build_seconds = perf_counter() - start
    parameters = sum(p.numel() for p in policy.parameters())
    prepare(policy, config)
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = PPOTrainer(config, policy, Path(scratch), accelerator=accelerator, progress=False)
        buffer, stats = _rollout(trainer)
        update_seconds = trainer._optimize(buffer, stats)["time/train_seconds"]
    if on_gpu:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # the process's peak resident memory (Linux reports it in KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak = max(accelerator.gather_for_metrics([peak], use_gather_object=True))
    transitions = ppo.num_envs * ppo.steps_per_env
    # Per minibatch of training, its share of the scoring pass included (about a fifth of
    # it with one epoch, less with more): what scales a cut update up to the paper's.
    minibatch_seconds = update_seconds / (transitions * ppo.epochs // ppo.minibatch_size)
    row = {
        "arch": arch,
        "processes": accelerator.num_processes,
        "parameters": parameters,
        "trainable": trainable,
        "peak_gib": peak,
        "tokens_per_s": stats.reply_tokens / stats.seconds,
        "update_seconds": update_seconds,
        "minibatch_seconds": minibatch_seconds,
        "build_seconds": build_seconds,
    }
    precision = "bf16 autocast" if policy.autocast_dtype is not None else "float32"
    say(
        f"{arch}: {parameters / 1e9:.2f} B parameters ({next(policy.model.parameters()).dtype}"
        f", random, built in {build_seconds:.0f} s), {trainable / 1e6:.0f} M trained (LoRA "
        f"r{config.model.lora_rank} on {', '.join(config.model.lora_parts)}, value head), "
        f"{precision}, {accelerator.num_processes} process(es) on {accelerator.device.type}"
    )
    if cuts:
        say(f"cut for a CPU: {' '.join(cuts)}")
    say(
        f"rollout       {stats.seconds:>8.1f} s  {ppo.num_envs} envs x {ppo.steps_per_env} "
        f"steps, {stats.reply_tokens} reply tokens: {row['tokens_per_s']:.1f} tokens/s"
    )
    say(
        f"PPO update    {update_seconds:>8.1f} s  {transitions} transitions x {ppo.epochs} "
        f"epochs in minibatches of {ppo.minibatch_size}, {ppo.grad_accum} per optimiser step, "
        f"after a scoring pass"
    )
    say(f"minibatch     {minibatch_seconds:>8.1f} s  the update's time per minibatch")
    say(
        f"peak memory   {peak:>8.1f} GiB {'on the GPU (allocated)' if on_gpu else 'resident'}"
        f"{', the largest process' if accelerator.num_processes > 1 else ''}"
    )
    paper = load_config(config_name).ppo
    if paper != ppo:
        full = paper.num_envs * paper.steps_per_env * paper.epochs // paper.minibatch_size
        say(
            f"the paper's update ({config_name}: {paper.num_envs * paper.steps_per_env} "
            f"transitions x {paper.epochs} epochs, replies up to {paper.max_new_tokens} tokens)"
            f" makes {full:,} minibatches: about {full * minibatch_seconds / 60:,.0f} min at "
            f"this speed and reply length, per process"
        )
    if json_path is not None and accelerator.is_main_process:
        with open(json_path, "a") as rows:  # one line per measurement
            rows.write(json.dumps(row) + "\n")
    return row


def _rollout(trainer):
    """One rollout of the trainer's config from its policy, as its first update collects it."""
    from rlvlm.rl.buffer import RolloutBuffer
    from rlvlm.rl.rollout import collect, make_envs
    from rlvlm.seeds import train_seeds

    config, ppo, policy = trainer.config, trainer.ppo, trainer.policy
    envs = make_envs(
        config.game,
        ppo.num_envs,
        image_size=policy.image_size,
        cot=ppo.cot,
        on_invalid=ppo.on_invalid,
        penalty=ppo.invalid_penalty,
    )
    buffer = RolloutBuffer(ppo.steps_per_env, ppo.num_envs)
    seeds = train_seeds(config.seed, 0, trainer.accelerator.process_index, ppo.num_envs)
    policy.eval()
    try:
        stats = collect(
            policy,
            envs,
            buffer,
            seeds,
            thought_coef=ppo.thought_coef,
            temperature=ppo.temperature,
            top_p=ppo.top_p,
            max_new_tokens=ppo.max_new_tokens,
        )
    finally:
        envs.close()
    return buffer, stats


def _warm_up(trainer, buffer) -> None:
    """A forward and backward pass of one minibatch, without a step: a process's first pass at
    a precision and shape sets up kernels once, which the timing should not count."""
    size = trainer.ppo.minibatch_size
    images, prompts, replies = (items[:size] for items in buffer.transitions())
    scores = trainer.model(trainer.policy.scoring_inputs(images, prompts, replies))
    (scores.logprob(trainer.ppo.thought_coef).sum() + scores.values.sum()).backward()
    trainer.optimizer.zero_grad(set_to_none=True)
