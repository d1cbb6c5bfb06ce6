"""A run directory's layout, the one place its names are spelt; torch-free, so that the
command line, the report and the experiment runner read runs without loading a model.

    runs/<name>/config.yaml        the config, as run
    runs/<name>/data/              demonstrations
    runs/<name>/sft/               the SFT checkpoint; sft_eval.json beside it
    runs/<name>/checkpoints/       update-000004/ ...: a policy checkpoint plus trainer_state/
    runs/<name>/metrics.jsonl      one line per update (and tensorboard/)
    runs/<name>/replays/           turn-by-turn episodes of the SFT and final evaluations
    runs/<name>/eval.json          the final evaluation
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rlvlm.config import TrainConfig, load_config, read_yaml

CONFIG_FILE = "config.yaml"
DATA_DIR = "data"
SFT_DIR = "sft"
SFT_EVAL_FILE = "sft_eval.json"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
REPLAYS_DIR = "replays"
EVAL_FILE = "eval.json"


def new_run_dir(config: TrainConfig) -> Path:
    """``out/name``, the name by default the game, the model and the time."""
    name = config.name or (
        f"{config.game}-{Path(config.model.name).name}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    return Path(config.out) / name


def resume_config(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The config a run was started with, with ``key=value`` overrides on top."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise ValueError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    read_yaml(run_dir / CONFIG_FILE)  # a clear error for a damaged file
    return load_config(run_dir / CONFIG_FILE, overrides)
