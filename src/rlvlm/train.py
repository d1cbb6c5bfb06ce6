"""The whole job behind ``rlvlm train``: vision pretraining (tiny presets), demonstrations,
SFT, PPO and the final evaluation, each stage resumable from what the run directory holds.

    runs/<name>/config.yaml      the config, as run
    runs/<name>/data/            demonstrations (unless sft.data names some)
    runs/<name>/sft/             the SFT checkpoint, and sft_eval.json beside it
    runs/<name>/checkpoints/     PPO checkpoints (update-000005/ ...)
    runs/<name>/metrics.jsonl    one line per PPO update (and tensorboard/)
    runs/<name>/eval.json        the final held-out evaluation
    runs/<name>/replays/         recorded evaluation episodes (sft/, final/) for the report
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from rlvlm.config import RLVLM_FILE, TrainConfig, to_yaml
from rlvlm.io import write_atomic, write_json
from rlvlm.layout import CONFIG_FILE, DATA_DIR, EVAL_FILE, REPLAYS_DIR, SFT_DIR, SFT_EVAL_FILE
from rlvlm.models import PRESETS, VLMPolicy, load_policy
from rlvlm.models.policy import check_loadable
from rlvlm.models.training import (
    add_lora,
    enable_gradient_checkpointing,
    freeze,
    set_precision,
    trainable_parameters,
)
from rlvlm.sft.data import (
    DATA_FILE,
    Demonstration,
    check_written_for,
    load_demonstrations,
    write_demonstrations,
)


def load_for_training(start_model: str, config: TrainConfig, accelerator: Accelerator) -> VLMPolicy:
    """``start_model`` in ``model.dtype`` on the accelerator's device, made ready to train."""
    dtype = None if config.model.dtype == "auto" else getattr(torch, config.model.dtype)
    policy = load_policy(start_model, device=accelerator.device, dtype=dtype, seed=config.seed)
    return prepare(policy, config)


def prepare(policy: VLMPolicy, config: TrainConfig) -> VLMPolicy:
    """Make the parts the config trains trainable: LoRA adapters, or the weights of every
    part not frozen; the value head always trains. Trained weights are made float32: in
    bf16, Adam's steps at the paper's rate (1e-5) mostly round away."""
    model = config.model
    check_prompt(policy.prompt, config)
    policy.prompt = config.prompt
    if model.lora and not hasattr(policy.model, "peft_config"):
        add_lora(policy, model.lora_rank, model.lora_alpha, model.lora_dropout, model.lora_parts)
    elif not model.lora:
        policy.requires_grad_(True)
        freeze(policy, model.freeze)
    policy.value_head.requires_grad_(True)
    for parameter in trainable_parameters(policy):
        parameter.data = parameter.data.float()
    if model.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    set_precision(policy, model.bf16)
    lower = {str(p.dtype) for p in policy.parameters() if p.dtype != torch.float32}
    if lower and policy.autocast_dtype is None:
        raise ValueError(
            f"the frozen weights are {', '.join(sorted(lower))}, which needs bf16 autocast: set "
            "model.bf16=true on hardware with bf16, or model.dtype=float32"
        )
    return policy


def check_prompt(trained: dict[str, Any] | None, config: TrainConfig) -> None:
    """Raise a ValueError when the starting model was trained on other prompts than the
    run's (a checkpoint records its own; None: never trained, any prompt will do)."""
    if trained is not None and trained != config.prompt:
        raise ValueError(
            f"the starting model was trained with cot={trained['cot']}, history="
            f"{trained['history']}, the run asks with ppo.cot={config.ppo.cot}, env.history="
            f"{config.env.history}: set them to match"
        )


def check_starting_model(config: TrainConfig) -> None:
    """Raise the ValueError a run would meet with its ``model.name`` (one that cannot load, or
    a checkpoint trained on other prompts), from its files alone, before any work."""
    meta = check_loadable(config.model.name) or {}
    check_prompt(meta.get("prompt"), config)


def run(
    config: TrainConfig,
    run_dir: Path,
    *,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or continue) every stage of the job in ``run_dir``; the final evaluation."""
    from rlvlm.rl.trainer import PPOTrainer, evaluate_held_out

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    run_dir = Path(run_dir)
    start = time.perf_counter()
    if main:
        write_atomic(run_dir / CONFIG_FILE, to_yaml(config))

    seed_stage(config.seed, "vision")
    with accelerator.main_process_first():  # the vision cache is shared: trained once
        start_model = starting_model(config, progress and main)
    sft_dir = run_dir / SFT_DIR
    sft_eval = None
    if config.sft.episodes > 0 or config.sft.data:
        if not (sft_dir / RLVLM_FILE).is_file():
            data_dir = Path(config.sft.data) if config.sft.data else run_dir / DATA_DIR
            if not config.sft.data:
                with accelerator.main_process_first():
                    _record_demonstrations(config, data_dir, progress and main)
            check_written_for(data_dir, config)  # given, or made by an earlier try of the run
            seed_stage(config.seed, "sft")
            demonstrations = load_demonstrations(data_dir)
            run_sft(config, start_model, demonstrations, sft_dir, accelerator, progress)
        sft_eval = _evaluate_once(
            run_dir / SFT_EVAL_FILE, sft_dir, config, "sft", accelerator, progress
        )
        start_model = str(sft_dir)

    if config.ppo.updates == 0:  # SFT only: the run ends with the SFT checkpoint
        return _finish(dict(sft_eval or {}), sft_eval, run_dir, start, accelerator)

    seed_stage(config.seed, "ppo")
    policy = load_for_training(start_model, config, accelerator)
    trainer = PPOTrainer(
        config,
        policy,
        run_dir,
        accelerator,
        progress=progress,
        final_replays=run_dir / REPLAYS_DIR / "final",
    )
    trainer.resume()
    if trainer.update < config.ppo.updates:
        trainer.train()
    if trainer.update < config.ppo.updates:  # stopped early (Ctrl-C): resumable
        return {"stopped_at_update": trainer.update, "run_dir": str(run_dir)}

    result: dict[str, Any] = {}
    if main:
        result = trainer.final_evaluation or evaluate_held_out(  # resumed after the last update
            policy,
            config,
            name=f"ppo ({run_dir.name})",
            progress=progress,
            replays=run_dir / REPLAYS_DIR / "final",
        )
    return _finish(result, sft_eval, run_dir, start, accelerator)


def _finish(
    result: dict[str, Any],
    sft_eval: dict[str, Any] | None,
    run_dir: Path,
    start: float,
    accelerator: Accelerator,
) -> dict[str, Any]:
    """The run's final result, with its SFT success beside it, written to ``eval.json``."""
    if accelerator.is_main_process:
        if sft_eval is not None:
            result["sft_success_rate"] = sft_eval["success_rate"]
        result["wall_seconds"] = round(time.perf_counter() - start, 1)
        write_json(run_dir / EVAL_FILE, result)
    accelerator.wait_for_everyone()
    return result


def seed_stage(seed: int, stage: str) -> None:
    """Seed torch's generator for one stage of the job from the run's seed and the stage's
    name, so that what a stage draws does not depend on which stages ran before it in this
    process: a vision stage trained here or read from the cache, an SFT resumed or not."""
    torch.manual_seed(zlib.crc32(f"{seed} {stage}".encode()))


def starting_model(config: TrainConfig, progress: bool) -> str:
    """The checkpoint training starts from: for a tiny preset, its vision-pretrained build."""
    name = config.model.name
    if name in PRESETS and config.vision.steps > 0:
        from rlvlm.models.vision import cached_vision_checkpoint

        path, report = cached_vision_checkpoint(
            name, [config.game], config.vision.steps, config.seed, progress
        )
        accuracy = report["accuracy"][config.game]
        if progress:
            print(f"vision: {name} reads {config.game} ({_reading(accuracy)}), cached in {path}")
        return str(path)
    return name


def _reading(accuracy: Any) -> str:
    if isinstance(accuracy, dict):
        return ", ".join(f"{k} {v:.0%}" for k, v in accuracy.items() if isinstance(v, float))
    return f"{accuracy:.0%}"


def run_sft(
    config: TrainConfig,
    start_model: str,
    demonstrations: list[Demonstration],
    out: Path,
    accelerator: Accelerator,
    progress: bool = True,
) -> dict[str, Any]:
    """SFT of ``start_model`` on ``demonstrations``, saved to ``out``."""
    from rlvlm.sft.trainer import train_sft

    sft = config.sft
    policy = load_for_training(start_model, config, accelerator)
    report = train_sft(
        policy,
        demonstrations,
        epochs=sft.epochs,
        lr=sft.lr,
        batch_size=sft.batch_size,
        max_grad_norm=sft.max_grad_norm,
        seed=config.seed,
        accelerator=accelerator,
        progress=progress,
    )
    if accelerator.is_main_process:
        policy.save(out)
        write_json(out / "sft_report.json", report)
    accelerator.wait_for_everyone()
    return report


def _record_demonstrations(config: TrainConfig, data_dir: Path, progress: bool) -> None:
    """The run's own demonstrations, recorded once, at the size the model sees."""
    if (data_dir / DATA_FILE).is_file():
        return
    name = config.model.name
    image_size = PRESETS[name].image_size if name in PRESETS else 300
    sft = config.sft
    write_demonstrations(
        config.game,
        sft.episodes,
        data_dir,
        epsilon=sft.epsilon,
        seed=config.seed,
        image_size=image_size,
        **config.prompt,
        progress=progress,
    )


def _evaluate_once(
    path: Path,
    checkpoint: Path,
    config: TrainConfig,
    name: str,
    accelerator: Accelerator,
    progress: bool,
) -> dict[str, Any] | None:
    """The held-out evaluation of a checkpoint, computed once and kept in ``path``."""
    from rlvlm.rl.trainer import evaluate_held_out

    if accelerator.is_main_process and not path.is_file():
        seed_stage(config.seed, f"{name} eval")
        policy = load_policy(checkpoint, device=accelerator.device, seed=config.seed).eval()
        set_precision(policy, config.model.bf16)  # evaluated as the trainer will run it
        replays = path.parent / REPLAYS_DIR / name
        write_json(
            path,
            evaluate_held_out(policy, config, name=name, progress=progress, replays=replays),
        )
    accelerator.wait_for_everyone()
    return json.loads(path.read_text()) if path.is_file() else None
