"""Experiment settings: dataclasses that the command line and the YAML files share.

A config is a ``TrainConfig`` with one section per stage. YAML files mirror it
(``configs/paper/<game>.yaml``, ``configs/tiny/<game>.yaml``), and ``key=value`` overrides
use dotted keys (``ppo.lr=3e-4``). The dataclass defaults are the paper's settings; the
tiny configs change what a CPU needs. Unknown keys and ill-typed values are errors that name
the valid choices.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from rlvlm.games import GAMES
from rlvlm.io import read_json, saved_dir

# Names only, so that building and checking a config needs no torch (``rlvlm.models`` has the
# things they name; a test keeps the two equal).
#: The parts of a VLM that LoRA adapts or full fine-tuning freezes.
MODEL_PARTS = ("vision", "projector", "language")
#: The experiment trackers a run can log to (``log_with``).
TRACKERS = ("tensorboard", "wandb", "mlflow")
#: The tiny presets, which ``rlvlm.models.presets`` builds.
TINY_PRESETS = (
    "tiny-llava",
    "tiny-llava-alfworld",
    "tiny-qwen2-vl",
    "tiny-qwen2.5-vl",
    "tiny-qwen3-vl",
    "tiny-idefics3",
)

#: What rlvlm writes beside a checkpoint's weights: the model it was trained from, and how.
RLVLM_FILE = "rlvlm.json"

#: What ``rlvlm train`` runs without arguments.
DEFAULT_CONFIG = "tiny/numberline"


@dataclass
class ModelConfig:
    name: str = "llava-hf/llava-v1.6-mistral-7b-hf"
    """A tiny preset (built offline), a checkpoint directory, or a hub id."""
    lora: bool = True
    """Train LoRA adapters (True) or the weights themselves (False)."""
    lora_rank: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    lora_parts: list[str] = field(default_factory=lambda: ["vision", "projector", "language"])
    """The parts that get adapters: vision, projector, language."""
    freeze: list[str] = field(default_factory=list)
    """Parts kept fixed in full fine-tuning (e.g. a pretrained vision tower)."""
    bf16: bool = True
    """bf16 autocast where the hardware runs it fast (bf16 GPUs; CPUs with AMX or AVX-512
    bf16); false keeps every pass in float32."""
    gradient_checkpointing: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The dtype the weights load in ("auto": the checkpoint's own). Trained weights are
    kept in float32 whatever it is, for the optimiser; the others stay as loaded, which
    needs bf16 autocast (model.bf16) when they are not float32."""

    def __post_init__(self):
        for key in ("lora_parts", "freeze"):
            if unknown := set(getattr(self, key)) - set(MODEL_PARTS):
                raise ValueError(
                    f"model.{key}: unknown parts {sorted(unknown)}; "
                    f"choose from {', '.join(MODEL_PARTS)}"
                )


@dataclass
class VisionConfig:
    steps: int = 300
    """Vision-pretraining steps for a tiny preset on the game's pictures (cached; real
    checkpoints skip this stage)."""


@dataclass
class EnvConfig:
    history: int = 0
    """Steps the prompt recalls: the episode's last K actions (ALFWorld's with the engine's
    text they answered; 0, the paper's setting: none). Demonstrations, rollouts and
    evaluations alike."""

    def __post_init__(self):
        _check(self.history >= 0, "env.history must be 0 or more")


@dataclass
class SFTConfig:
    episodes: int = 4000
    """Oracle episodes recorded as demonstrations (0 skips SFT)."""
    epsilon: float = 0.0
    """Share of demonstrated actions replaced by random ones (truthful replies)."""
    data: str | None = None
    """An existing demonstrations directory (``rlvlm data``) instead of recording new ones."""
    epochs: int = 1
    lr: float = 2e-5
    batch_size: int = 16
    max_grad_norm: float = 1.0

    def __post_init__(self):
        _check(0 <= self.epsilon <= 1, "sft.epsilon must be in [0, 1]")
        _check(self.episodes >= 0, "sft.episodes must be 0 or more")
        _check(self.epochs >= 1 and self.batch_size >= 1, "sft.epochs and batch_size must be >= 1")


@dataclass
class PPOConfig:
    updates: int = 25
    """PPO updates; the learning rate is cosine-annealed over them. 0: SFT only, and the
    SFT checkpoint's evaluation is the run's final one."""
    num_envs: int = 8
    """Environments stepped together (per process); one batched generation per step."""
    steps_per_env: int = 64
    """Steps each environment takes per update: num_envs * steps_per_env transitions."""
    epochs: int = 4
    minibatch_size: int = 1
    grad_accum: int = 128
    """Minibatches whose gradients add up to one optimizer step."""
    lr: float = 1e-5
    lr_min: float = 1e-9
    value_lr: float | None = None
    """The value head's learning rate (default: lr). A critic trained from scratch at a
    fine-tuning rate barely moves, so a small model's config raises it."""
    adam_eps: float = 1e-8
    clip_coef: float = 0.1
    clip_vloss: bool = True
    vf_coef: float = 0.5
    max_grad_norm: float = 0.01
    gamma: float = 0.9
    gae_lambda: float = 0.95
    advantage: Literal["gae", "grpo", "gigpo"] = "gae"
    """How advantages are estimated: ``gae`` with the critic (the paper's), or without one,
    from groups of episodes that start from the same deal: ``grpo`` (each episode's return
    against its group's) or ``gigpo`` (GRPO plus step groups of identical states). Without
    a critic the value head is neither trained nor used."""
    group_size: int = 1
    """G, for grpo and gigpo (at least 2): the environments come in groups of G that share
    their reset seeds, so the k-th episodes of a group's environments play one deal."""
    group_std: bool = True
    """grpo, gigpo: divide by the group's standard deviation (False: Dr. GRPO's, the
    difference from the group's mean only)."""
    step_advantage_weight: float = 1.0
    """gigpo: the weight of the step-level advantage added to the episode-level one."""
    thought_coef: float = 0.5
    """lambda: the weight of the thought tokens' log-prob."""
    norm_adv: bool = True
    """Normalise GAE's advantages over the rollout (the group estimators normalise within
    their groups)."""
    ent_coef: float = 0.0
    """Entropy bonus (mean per-token entropy of the reply)."""
    kl_coef: float = 0.0
    """Penalty on the KL divergence to the starting policy."""
    temperature: float = 0.2
    top_p: float = 1.0
    """Only 1: the training pass scores replies over the whole vocabulary, so nucleus
    sampling would train on replies of another policy than the one it scores."""
    max_new_tokens: int = 256
    on_invalid: Literal["random", "noop"] = "random"
    """What an unparsable reply does: a random action (the paper) or nothing, penalised."""
    invalid_penalty: float = 1.0
    cot: bool = True
    """Ask for a chain of thought before the action (False: the action only)."""
    vector: Literal["sync", "async"] = "sync"
    """Step the environments in this process or in subprocess workers."""

    def __post_init__(self):
        for key in (
            "num_envs",
            "steps_per_env",
            "epochs",
            "minibatch_size",
            "grad_accum",
            "max_new_tokens",
        ):
            _check(getattr(self, key) >= 1, f"ppo.{key} must be at least 1")
        _check(self.updates >= 0, "ppo.updates must be 0 (SFT only) or more")
        transitions, step = (
            self.num_envs * self.steps_per_env,
            self.minibatch_size * self.grad_accum,
        )
        _check(
            transitions % step == 0,
            f"ppo.minibatch_size x ppo.grad_accum ({step}) must divide the rollout's "
            f"num_envs x steps_per_env ({transitions}): every optimiser step takes as many "
            "transitions",
        )
        _check(
            self.group_size >= 1 and self.num_envs % self.group_size == 0,
            f"ppo.group_size ({self.group_size}) must divide ppo.num_envs ({self.num_envs})",
        )
        _check(
            self.advantage == "gae" or self.group_size >= 2,
            f"ppo.advantage={self.advantage} compares episodes within groups: set "
            "ppo.group_size to 2 or more",
        )
        _check(0 <= self.thought_coef <= 1, "ppo.thought_coef must be in [0, 1]")
        _check(self.temperature > 0, "ppo.temperature must be above 0 (PPO samples)")
        _check(
            self.top_p == 1,
            "ppo.top_p must be 1: training scores the whole distribution, "
            "so replies must be sampled from all of it (lower ppo.temperature instead)",
        )


@dataclass
class EvalConfig:
    episodes: int = 200
    """Held-out episodes for the periodic and the final evaluation."""
    every: int = 5
    """Evaluate every this many updates (0: never; the run evaluates once more at the end)."""
    seed: int = 0
    """Which held-out set (the same deals for every run with this seed)."""
    replays: int = 8
    """Episodes of the SFT and the final evaluation saved turn by turn for the report."""
    temperature: float | None = None
    """Sampling temperature of every evaluation, SFT and PPO alike (default: ppo's)."""
    batch_size: int = 32
    """Episodes played side by side (one batched generation per step)."""

    def __post_init__(self):
        _check(self.replays >= 0, "eval.replays must be 0 or more")
        _check(self.batch_size >= 1, "eval.batch_size must be at least 1")
        _check(
            self.temperature is None or self.temperature >= 0,
            "eval.temperature must be 0 (greedy) or more",
        )


@dataclass
class TrainConfig:
    game: str = "numberline"
    seed: int = 0
    out: str = "runs"
    """The parent of the run directory."""
    name: str | None = None
    """The run directory's name (default: game, model and time)."""
    checkpoint_every: int = 5
    keep_checkpoints: int = 2
    log_with: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Where every update's metrics go besides metrics.jsonl, through accelerate's trackers:
    any of tensorboard (run_dir/tensorboard), wandb and mlflow (with the package installed);
    [] for none."""
    model: ModelConfig = field(default_factory=ModelConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if unknown := sorted(set(self.log_with) - set(TRACKERS)):
            raise ValueError(
                f"log_with: unknown trackers {unknown}; choose from {', '.join(TRACKERS)}"
            )
        if self.game not in GAMES:
            raise ValueError(f"unknown game {self.game!r}; choose from {', '.join(GAMES)}")
        _check(self.checkpoint_every >= 1, "checkpoint_every must be at least 1")
        _check(
            self.ppo.updates > 0 or self.sft.episodes > 0 or self.sft.data is not None,
            "ppo.updates=0 (SFT only) needs SFT: sft.episodes or sft.data",
        )

    @property
    def prompt(self) -> dict[str, Any]:
        """How the policy is asked, in demonstrations, rollouts and evaluations alike: with
        thoughts or not (``ppo.cot``) and the past steps recalled (``env.history``)."""
        return {"cot": self.ppo.cot, "history": self.env.history}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# ----------------------------------------------------------------------------- reading


#: Where shipped YAML files live under ``rlvlm/configs``, by kind, and which of their
#: folders count (None: all).
_SHIPPED = {"config": ((), ("paper", "tiny")), "experiment spec": (("experiments",), None)}


def config_names(kind: str = "config") -> list[str]:
    """The shipped configs, as ``tiny/numberline``, ``paper/blackjack`` ... (or, for
    ``kind="experiment spec"``, the shipped experiment specs)."""
    root = _shipped_root(kind)
    groups = _SHIPPED[kind][1]
    return sorted(
        f"{group.name}/{file.name.removesuffix('.yaml')}"
        for group in root.iterdir()
        if group.is_dir() and (groups is None or group.name in groups)
        for file in group.iterdir()
        if file.name.endswith(".yaml")
    )


_ARCHITECTURES = ("configs", "architectures")


def architecture_folder(name: str):
    """Where a real checkpoint's architecture ships its config files."""
    return resources.files("rlvlm").joinpath(*_ARCHITECTURES, name)


def architecture_names() -> list[str]:
    """The shipped architectures (``configs/architectures/<name>/``), listed without torch."""
    root = resources.files("rlvlm").joinpath(*_ARCHITECTURES)
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir())


def _shipped_root(kind: str):
    return resources.files("rlvlm").joinpath("configs", *_SHIPPED[kind][0])


def default_config_name(game: str | None, model: str | None) -> str:
    """``tiny/<game>`` for a tiny preset, a checkpoint trained from one (its ``rlvlm.json``
    names the preset as its base) or no model; ``paper/<game>`` for any other."""
    tiny = model is None or model in TINY_PRESETS or _base_of(model) in TINY_PRESETS
    return f"{'tiny' if tiny else 'paper'}/{game or 'numberline'}"


def _base_of(checkpoint: str) -> str | None:
    """The model an rlvlm checkpoint was trained from, read without loading it."""
    try:
        return read_json(saved_dir(checkpoint) / RLVLM_FILE).get("base")
    except (OSError, ValueError, AttributeError):  # not a readable rlvlm checkpoint
        return None


def looks_like_hub_id(name: str) -> bool:
    """``owner/model``, as on the Hugging Face hub (tried only where no such path exists)."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def read_yaml(source: str | Path, kind: str = "config") -> dict[str, Any]:
    """A config file's contents: a path, or a shipped config's name (``tiny/numberline``);
    with ``kind="experiment spec"``, a spec's (``paper/table2``)."""
    path = Path(source)
    if not path.is_file():
        names = config_names(kind)
        if str(source) not in names:
            raise ValueError(
                f"no {kind} {str(source)!r}; give a YAML path or one of {', '.join(names)}"
            )
        path = Path(str(_shipped_root(kind) / f"{source}.yaml"))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {kind} is a mapping of keys to values")
    return data


def load_config(
    source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """A config from a YAML file or shipped name (default: the embedded tiny NumberLine job)
    with ``key=value`` overrides applied on top."""
    data = read_yaml(source or DEFAULT_CONFIG)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        _set_dotted(data, key.strip(), yaml.safe_load(text) if text.strip() else None)
    return from_dict(TrainConfig, data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    for section in sections:
        data = data.setdefault(section, {})
        if not isinstance(data, dict):
            raise ValueError(f"{key}: {section!r} is a value, not a section")
    data[last] = value


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts, checking every key and value type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    if unknown := set(data) - set(fields):
        name = f"{prefix}{sorted(unknown)[0]}"
        valid = ", ".join(f"{prefix}{key}" for key in fields)
        raise ValueError(f"unknown config key {name!r}; valid keys: {valid}")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{key} is a section of keys, got {value!r}")
            values[key] = from_dict(hint, value, f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, hint, f"{prefix}{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        items = value if isinstance(value, list) else [] if value is None else [value]
        return [_coerce(item, args[0], key) for item in items]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys, as overrides name them.

    >>> flatten({"ppo": {"lr": 0.1, "cot": True}, "game": "numberline"})
    {'ppo.lr': 0.1, 'ppo.cot': True, 'game': 'numberline'}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
