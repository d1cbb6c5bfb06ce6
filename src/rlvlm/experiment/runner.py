"""Running an experiment's cells: each is ``rlvlm train --resume <cell>`` in a process of its
own, side by side on this machine or as tasks on a Ray cluster.

A cell's run directory gets its config as the cell starts, so every cell runs the same way
whether it is new or was interrupted: finished cells (with ``eval.json``, or with no run
directory here and recorded as done in the experiment's ``results.json``) are skipped, the
others continue from what their directory holds. A cell whose saved config no longer
matches the spec is an error, never silently trained on or counted under the new one.

Cells that differ only in what PPO alone reads (a lambda sweep, the advantage estimators)
have the same SFT stage: the first to finish it lends a copy to the others as they start,
which then go on to PPO as a run resumed after SFT does (each stage is seeded on its own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import cache
from pathlib import Path
from typing import Literal

from rlvlm.config import TrainConfig, flatten, to_yaml
from rlvlm.experiment.spec import Cell, Experiment
from rlvlm.experiment.table import fingerprint, recorded
from rlvlm.io import atomic_directory, write_atomic
from rlvlm.layout import (
    CONFIG_FILE,
    DATA_DIR,
    EVAL_FILE,
    REPLAYS_DIR,
    SFT_DIR,
    SFT_EVAL_FILE,
    resume_config,
)

LOG_DIR = "logs"
Status = Literal["done", "started", "new"]

#: The settings that only the PPO stage reads (neither the demonstrations, nor SFT, nor the
#: SFT checkpoint's evaluation): cells that differ in nothing else share their SFT stage.
PPO_ONLY = (
    "checkpoint_every",
    "keep_checkpoints",
    "eval.every",
    *(
        f"ppo.{key}"
        for key in [
            "updates",
            "num_envs",
            "steps_per_env",
            "epochs",
            "minibatch_size",
            "grad_accum",
            "lr",
            "lr_min",
            "value_lr",
            "adam_eps",
            "clip_coef",
            "clip_vloss",
            "vf_coef",
            "max_grad_norm",
            "gamma",
            "gae_lambda",
            "advantage",
            "group_size",
            "group_std",
            "step_advantage_weight",
            "thought_coef",
            "norm_adv",
            "ent_coef",
            "kl_coef",
            "invalid_penalty",
            "vector",
        ]
    ),
)

#: Rough costs on the 2-core development machine, measured with the main job: seconds per
#: vision step, per SFT reply and epoch, per rollout reply, per PPO scoring pass of a
#: transition, and per evaluation reply (generation at 64 new tokens at most).
SECONDS = {
    "vision_step": 0.08,
    "sft_reply": 0.0175,
    "rollout_reply": 0.016,
    "ppo_pass": 0.0092,
    "eval_reply": 0.024,
}


def status(cell: Cell) -> Status:
    if (cell.run_dir / EVAL_FILE).is_file():
        return "done"
    return "started" if (cell.run_dir / CONFIG_FILE).is_file() else "new"


def statuses(cells: list[Cell]) -> dict[str, Status]:
    """Each cell's status by name, the cells the experiment's ``results.json`` records as
    done (their run directories elsewhere) included."""
    kept = recorded(cells, cells[0].run_dir.parent) if cells else {}
    return {cell.name: "done" if cell.name in kept else status(cell) for cell in cells}


def check_unchanged(cell: Cell) -> None:
    """A started or finished cell must still be the run the spec describes: a table never
    mixes runs of two versions of a spec."""
    saved = flatten(resume_config(cell.run_dir).to_dict())
    wanted = flatten(cell.config.to_dict())
    if changed := sorted(
        key for key in wanted.keys() | saved.keys() if saved.get(key) != wanted.get(key)
    ):
        raise ValueError(
            f"cell {cell.name} was started with other settings ({', '.join(changed)}); "
            f"restore the spec, or remove {cell.run_dir} (and its row in the experiment's "
            "results.json, if it has one) to start it afresh"
        )


def run_cells(
    experiment: Experiment,
    cells: list[Cell],
    *,
    workers: int = 1,
    backend: Literal["local", "ray"] = "local",
    say: Callable[[str], None] = print,
) -> list[Cell]:
    """Run every cell that is not done, ``workers`` at a time; the cells that failed.

    Each cell gets an equal share of the threads this process may use (``OMP_NUM_THREADS``
    when set, else this machine's cores); its output goes to ``<experiment>/logs/<cell>.log``.
    """
    for cell in cells:
        if status(cell) != "new":
            check_unchanged(cell)
    state = statuses(cells)
    todo = [cell for cell in cells if state[cell.name] != "done"]
    say(
        f"{experiment.name}: {len(cells) - len(todo)} of {len(cells)} cells done, "
        f"{len(todo)} to run, {workers} at a time ({backend})"
    )
    if not todo:
        return []
    threads = max(1, _thread_budget() // workers)
    (cells[0].run_dir.parent / LOG_DIR).mkdir(parents=True, exist_ok=True)
    jobs = {cell.name: (_command(cell), str(_log(cell))) for cell in todo}
    start, finished, failed = time.perf_counter(), 0, []

    def report(cell: Cell, code: int, seconds: float) -> None:
        nonlocal finished
        finished += 1
        outcome = _outcome(cell) if code == 0 else f"failed (exit {code}), see {jobs[cell.name][1]}"
        say(
            f"[{finished}/{len(todo)}] {cell.name}: {outcome} ({seconds:.0f} s; "
            f"{time.perf_counter() - start:.0f} s in all)"
        )
        if code != 0:
            failed.append(cell)

    by_name = {cell.name: cell for cell in todo}

    def begin(cell: Cell) -> None:
        _begin(cell)
        _share_sft(cell, cells)

    environment = {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    if backend == "ray":
        for name, code, seconds in _on_ray(by_name, begin, jobs, environment, threads, workers):
            report(by_name[name], code, seconds)
    else:

        def run(cell: Cell) -> tuple[int, float]:
            begin(cell)
            return run_command(*jobs[cell.name], environment)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run, cell): cell for cell in todo}
            for future in as_completed(futures):
                report(futures[future], *future.result())
    return failed


def _begin(cell: Cell) -> None:
    """Give a new cell its run directory and config as it starts (not before: a grid
    stopped early leaves the cells it never reached new, free to change in the spec)."""
    if status(cell) == "new":
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(cell.run_dir / CONFIG_FILE, to_yaml(cell.config))


def sft_stage(config: TrainConfig) -> str:
    """What a cell's SFT stage depends on, as a digest: cells with the same one share it.
    The SFT checkpoint is evaluated at PPO's sampling temperature unless ``eval.temperature``
    is set, so only then is that temperature PPO's alone."""
    sampled = () if config.eval.temperature is None else ("ppo.temperature",)
    return fingerprint(config, (*PPO_ONLY, *sampled))


def _share_sft(cell: Cell, cells: list[Cell]) -> None:
    """Copy into ``cell`` the finished SFT stage of another cell with the same one (its
    demonstrations, checkpoint, evaluation and replays), if there is one and ``cell`` has
    not finished its own."""
    if _sft_finished(cell.run_dir):
        return
    stage = sft_stage(cell.config)
    lender = next(
        (
            other
            for other in cells
            if other is not cell
            and _sft_finished(other.run_dir)
            and sft_stage(other.config) == stage
        ),
        None,
    )
    if lender is None:
        return
    for part in (DATA_DIR, f"{REPLAYS_DIR}/sft", SFT_DIR):
        if (lender.run_dir / part).is_dir():
            with atomic_directory(cell.run_dir / part) as staging:
                # Hard links: a finished stage's files are only ever read, never changed.
                shutil.copytree(
                    lender.run_dir / part, staging, copy_function=os.link, dirs_exist_ok=True
                )
    # Last: with the evaluation in place, the stage counts as done.
    write_atomic(cell.run_dir / SFT_EVAL_FILE, (lender.run_dir / SFT_EVAL_FILE).read_bytes())


def _thread_budget() -> int:
    try:
        return int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def _sft_finished(run_dir: Path) -> bool:
    return (run_dir / SFT_EVAL_FILE).is_file()  # written once the SFT checkpoint is saved


def _log(cell: Cell) -> Path:
    return cell.run_dir.parent / LOG_DIR / f"{cell.name}.log"


def run_command(command: list[str], log: str, environment: dict[str, str]) -> tuple[int, float]:
    """Run one cell's command with its output in ``log``; its exit code and seconds."""
    start = time.perf_counter()
    with open(log, "a") as output:
        done = subprocess.run(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=os.environ | environment,
            check=False,
        )
    return done.returncode, time.perf_counter() - start


def _on_ray(cells, begin, jobs, environment, threads: int, workers: int):
    """Each cell a Ray task of ``threads`` CPUs on the cluster that ``ray.init`` finds (the
    ``RAY_ADDRESS`` variable, a running ``ray start``, or a new local instance); every node
    must see the experiment's folder at the same path."""
    import ray

    ray.init(ignore_reinit_error=True, log_to_driver=False)
    task = ray.remote(num_cpus=threads)(run_command)
    waiting = list(jobs)
    running = {}
    while waiting or running:
        while waiting and len(running) < workers:
            name = waiting.pop(0)
            begin(cells[name])
            running[task.remote(*jobs[name], environment)] = name
        ready, _ = ray.wait(list(running), num_returns=1)
        name = running.pop(ready[0])
        code, seconds = ray.get(ready[0])
        yield name, code, seconds


def _command(cell: Cell) -> list[str]:
    return [sys.executable, "-m", "rlvlm", "train", "--resume", str(cell.run_dir)]


def _outcome(cell: Cell) -> str:
    import json

    result = json.loads((cell.run_dir / EVAL_FILE).read_text())
    sft = result.get("sft_success_rate")
    before = f"SFT {sft:.1%}, " if sft is not None else ""
    return f"{before}final {result['success_rate']:.1%}"


def estimate_seconds(config: TrainConfig, sft: bool = True) -> float:
    """A rough wall time for a cell on the 2-core development machine with no other job,
    from the costs in ``SECONDS`` and the expert's mean episode length; without the SFT
    stage where ``sft`` is false (borrowed from another cell)."""
    length = expert_episode_length(config.game)
    reply = config.ppo.max_new_tokens / 64  # generation time grows with the reply's length
    evaluation = config.eval.episodes * length * reply * SECONDS["eval_reply"]
    transitions = config.ppo.updates * config.ppo.num_envs * config.ppo.steps_per_env
    ppo = transitions * (
        reply * SECONDS["rollout_reply"] + (config.ppo.epochs + 1) * SECONDS["ppo_pass"]
    )
    every = config.eval.every
    ppo += ((config.ppo.updates // every if every else 0) + 1) * evaluation
    sft_stage = 0.0
    if sft and config.sft.episodes > 0:
        sft_stage = config.sft.episodes * length * config.sft.epochs * SECONDS["sft_reply"]
        sft_stage += evaluation
    return config.vision.steps * SECONDS["vision_step"] + sft_stage + ppo


@cache
def expert_episode_length(game: str, episodes: int = 20) -> float:
    """The expert's mean episode length over a few deals (a proxy for a trained policy's)."""
    from rlvlm.games import make

    env = make(game)
    task, steps = env.unwrapped.task, 0
    for seed in range(episodes):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(task.oracle_action(env.unwrapped.view()))
            steps, done = steps + 1, terminated or truncated
    env.close()
    return steps / episodes
