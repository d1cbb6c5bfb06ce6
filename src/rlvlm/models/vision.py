"""Vision pretraining for the tiny presets: teach a random vision tower to read the games.

A tiny VLM trained from scratch does not learn to see through the language loss: reading stays
at chance while the reply format is learnt (measured on every preset). Real VLMs start from a
pretrained vision encoder; the tiny presets get this stage instead. The vision tower and the
projector train alone through a direct head per game that predicts the game's state labels
(``task.labels(view)``) from exactly the features the language model receives for the image:

    image -> processor -> model.get_image_features -> LayerNorm -> flatten all image tokens
          -> one linear layer -> the concatenated logits of the game's labels

The flat head keeps each token's position, which is the information (a mean-pooled head stays
at chance). The loss is the cross-entropy summed over the labels. Pictures are rendered on the
fly from random seeded deals plus a few random moves (so formulas and hands vary); after a
first unshifted stretch, half of them are shifted by up to a few pixels with edge padding. The
games take turns batch by batch. The language model is never touched.

``cached_vision_checkpoint`` caches the result as a policy checkpoint (``load_policy(path)`` loads
it) keyed by the preset, the games, the budget, the recipe and the code that draws the
pictures, so a second call reuses it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlvlm.config import RLVLM_FILE
from rlvlm.games import CARD_GAMES, get_game
from rlvlm.games.base import GameEnv
from rlvlm.io import write_json
from rlvlm.models.policy import VLMPolicy, load_policy
from rlvlm.models.presets import PRESETS
from rlvlm.progress import progress_bar
from rlvlm.seeds import EVAL_SEED_BASE

#: Steps of the default budget (batches of 64, shared round-robin by the games). Measured on
#: tiny-llava with all four games, 2 CPU cores, 3.6 steps/s (4.6 minutes): held-out labels
#: read NumberLine 100 %, EZPoints 90 %, Points24 74 %, Blackjack 98 %; every card's rank and
#: suit in the formula games 100 %, the 7-pixel formula text much less.
DEFAULT_STEPS = 1000
#: Held-out pictures use seeds from here on. Training pictures draw their seeds below the
#: evaluation episodes' (``EVAL_SEED_BASE``), so no evaluation deal is ever trained on.
HELD_OUT_SEED_BASE = 1 << 40
CACHE_ENV = "RLVLM_CACHE"
REPORT_SUFFIX = ".json"


@dataclass(frozen=True)
class VisionRecipe:
    """The hyperparameters of vision pretraining, as measured on the tiny presets."""

    batch_size: int = 64
    #: The vision tower's and projector's learning rate. 1e-3, enough for one game and a
    #: 0.8 M tower, kept tiny-llava at chance on all four games together; 3e-4 reads them.
    lr: float = 3e-4
    #: The reading heads' learning rate.
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 20
    #: Training pictures move by up to this many pixels each way; held-out ones never do.
    max_shift: int = 3
    #: Shifts start after this fraction of the steps and reach ``max_shift`` at
    #: ``shift_full``, one pixel at a time, and then move only this fraction of the
    #: pictures. Measured: shifted pictures from the start keep a random tower at chance,
    #: unshifted ones are read within a few dozen steps, and shifting every picture later
    #: on stalls the unshifted reading that the games need (they never move their pictures).
    shift_start: float = 0.3
    shift_full: float = 0.6
    shift_fraction: float = 0.5
    #: Pictures per game in the held-out evaluation.
    held_out_images: int = 256
    #: Run the vision tower under bfloat16 autocast (the head stays in float32).
    bf16: bool = True


# ------------------------------------------------------------------------------ game states


class GameStates:
    """Random states of one game and their pictures and labels.

    A state is a seeded deal followed by 0..``max_steps`` random legal moves, none of which
    ends the episode: a move that would end it is undone and another one tried, and when
    every legal move would end it the state stays where it is.
    """

    def __init__(self, game: str, image_size: int):
        self.game = game
        self.image_size = image_size
        env = get_game(game).make(image_size=image_size).unwrapped
        if not isinstance(env, GameEnv):
            raise TypeError(f"{game} is not a picture game; it has no labels to learn")
        self.env: GameEnv = env
        labels = self.env.task.labels(self.state(0, np.random.default_rng(0)))
        self.label_names = tuple(label.name for label in labels)
        self.num_classes = tuple(label.num_classes for label in labels)

    def state(self, seed: int, rng: np.random.Generator) -> Any:
        """The view after a deal from ``seed`` and up to ``max_steps`` random moves from rng."""
        self.env.reset(seed=seed)
        for _ in range(int(rng.integers(0, self.env.max_steps + 1))):
            if not self._move(rng):
                break
        return self.env.view()

    def _move(self, rng: np.random.Generator) -> bool:
        for action in rng.permutation(np.asarray(self.env.legal_actions())):
            saved = copy.deepcopy(self.env)
            _, _, terminated, truncated, _ = self.env.step(int(action))
            if not (terminated or truncated):
                return True
            self.env = saved
        return False

    def labels(self, view: Any) -> list[int]:
        labels = self.env.task.labels(view)
        layout = tuple(label.name for label in labels), tuple(x.num_classes for x in labels)
        if layout != (self.label_names, self.num_classes):
            raise ValueError(f"{self.game}'s labels changed layout: {layout}")
        return [label.value for label in labels]

    def sample(
        self,
        seeds: Sequence[int],
        rng: np.random.Generator,
        max_shift: int = 0,
        shift_fraction: float = 1.0,
    ) -> tuple[list[np.ndarray], torch.Tensor]:
        """Pictures and labels of a batch of states; each picture is shifted by up to
        ``max_shift`` pixels with probability ``shift_fraction``."""
        images, targets = [], []
        for seed in seeds:
            view = self.state(int(seed), rng)
            image = self.env.task.draw(view, self.image_size)
            if max_shift and rng.random() < shift_fraction:
                dx, dy = rng.integers(-max_shift, max_shift + 1, 2)
                image = shift_image(image, int(dx), int(dy))
            images.append(image)
            targets.append(self.labels(view))
        return images, torch.tensor(targets, dtype=torch.long)


def shift_image(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``image`` moved right by ``dx`` and down by ``dy`` pixels, the edges repeated.

    >>> shift_image(np.arange(4).reshape(1, 4, 1), 1, 0).ravel().tolist()
    [0, 0, 1, 2]
    """
    margin = max(abs(dx), abs(dy))
    if margin == 0:
        return image
    height, width = image.shape[:2]
    padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
    return padded[margin - dy : margin - dy + height, margin - dx : margin - dx + width]


@dataclass(frozen=True)
class HeldOut:
    """A fixed set of unshifted pictures of one game, from seeds that training never uses."""

    game: str
    images: list[np.ndarray]
    targets: torch.Tensor  # (N, labels)
    label_names: tuple[str, ...]
    num_classes: tuple[int, ...]


def held_out_set(states: GameStates, count: int) -> HeldOut:
    images, targets = [], []
    for i in range(count):
        seed = HELD_OUT_SEED_BASE + i
        batch_images, batch_targets = states.sample([seed], np.random.default_rng(seed))
        images += batch_images
        targets.append(batch_targets)
    return HeldOut(states.game, images, torch.cat(targets), states.label_names, states.num_classes)


# ---------------------------------------------------------------------------------- reading


def image_features(policy: VLMPolicy, images: Sequence[np.ndarray]) -> torch.Tensor:
    """What the language model receives for each image, shape (images, tokens, hidden).

    The family's own image processor prepares the pictures and the model's
    ``get_image_features`` encodes and projects them; per-image outputs are stacked.
    """
    model = policy.model
    # One list per image: processors that batch several images per sample (Idefics3) would
    # otherwise take the whole batch as one sample.
    nested = [[image] for image in images]
    inputs = policy.processor.image_processor(images=nested, return_tensors="pt")
    accepted = inspect.signature(model.get_image_features).parameters
    kwargs = {k: v.to(policy.device) for k, v in inputs.items() if k in accepted}
    output = model.get_image_features(**kwargs)
    features = getattr(output, "pooler_output", output)
    if isinstance(features, (list, tuple)):
        features = torch.stack([f.reshape(-1, f.shape[-1]) for f in features])
    elif features.dim() == 2:  # every image's tokens concatenated
        features = features.reshape(len(images), -1, features.shape[-1])
    return features


class ReadingHead(nn.Module):
    """LayerNorm, every image token's features flattened in place, one linear layer: the
    concatenated logits of a game's labels."""

    def __init__(self, tokens: int, hidden: int, num_classes: Sequence[int]):
        super().__init__()
        self.num_classes = tuple(num_classes)
        self.norm = nn.LayerNorm(hidden)
        self.linear = nn.Linear(tokens * hidden, sum(self.num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features.float()).flatten(1))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy summed over the labels, averaged over the batch."""
        chunks = logits.split(self.num_classes, dim=-1)
        return sum(F.cross_entropy(c, targets[:, i]) for i, c in enumerate(chunks))

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        chunks = logits.split(self.num_classes, dim=-1)
        return torch.stack([c.argmax(-1) for c in chunks], dim=-1)


def _autocast(policy: VLMPolicy, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(policy.device.type, dtype=torch.bfloat16)


@torch.no_grad()
def reading_accuracy(
    policy: VLMPolicy,
    head: ReadingHead,
    held_out: HeldOut,
    batch_size: int = 64,
    bf16: bool = False,
) -> dict[str, Any]:
    """How well ``head`` reads a held-out set through the policy's vision features.

    ``labels`` is the fraction of labels right, ``images`` the fraction of pictures with every
    label right; ``chance`` is the mean of 1 / classes and ``majority`` what always answering
    each label's most common held-out value scores (empty card slots make it high).
    """
    was_training = policy.model.training
    policy.model.eval()
    predictions = []
    for start in range(0, len(held_out.images), batch_size):
        with _autocast(policy, bf16):
            features = image_features(policy, held_out.images[start : start + batch_size])
        predictions.append(head.predict(head(features)).cpu())
    policy.model.train(was_training)
    correct = torch.cat(predictions) == held_out.targets
    majority = [torch.bincount(column).max().item() / len(column) for column in held_out.targets.T]
    return {
        "labels": correct.float().mean().item(),
        "images": correct.all(-1).float().mean().item(),
        "chance": float(np.mean([1 / n for n in held_out.num_classes])),
        "majority": float(np.mean(majority)),
        "held_out_images": len(held_out.images),
        "per_label": {
            name: correct[:, i].float().mean().item() for i, name in enumerate(held_out.label_names)
        },
    }


# --------------------------------------------------------------------------------- training


def _games(games: Sequence[str] | str) -> tuple[str, ...]:
    """The requested games, validated, once each, in the registry's order."""
    if isinstance(games, str):
        games = [games]
    for game in games:
        get_game(game)  # a ValueError naming the choices
        if game not in CARD_GAMES:
            raise ValueError(
                f"{game} has no picture labels to learn; choose from {', '.join(CARD_GAMES)}"
            )
    if not games:
        raise ValueError(f"name at least one game: {', '.join(CARD_GAMES)}")
    return tuple(game for game in CARD_GAMES if game in set(games))


def shift_at(step: int, total: int, recipe: VisionRecipe) -> int:
    """The largest shift of the training pictures at ``step`` of ``total``.

    >>> [shift_at(s, 10, VisionRecipe()) for s in range(10)]
    [0, 0, 0, 1, 2, 3, 3, 3, 3, 3]
    """
    start, full = recipe.shift_start * total, recipe.shift_full * total
    if recipe.max_shift <= 0 or step < start:
        return 0
    if step >= full:
        return recipe.max_shift
    return min(recipe.max_shift, 1 + int(recipe.max_shift * (step - start) / (full - start)))


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _parts(policy: VLMPolicy) -> tuple[list[nn.Parameter], dict[str, nn.Parameter]]:
    """The vision and projector parameters, and the language model's by name."""
    trainable, language = [], {}
    for name, parameter in policy.model.named_parameters():
        if policy.family.part_of(name) == "language":
            language[name] = parameter
        else:
            trainable.append(parameter)
    if not trainable:
        raise ValueError(f"found no vision parameters in this {policy.family.name} model")
    return trainable, language


def pretrain_vision(
    preset: str,
    games: Sequence[str] | str,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    progress: bool = True,
    *,
    recipe: VisionRecipe = VisionRecipe(),
) -> tuple[VLMPolicy, dict[str, Any]]:
    """Train a fresh preset's vision tower and projector to read ``games``' pictures.

    Returns the policy (language model and value head as built) and a report: the held-out
    reading ``accuracy`` per game (see ``reading_accuracy``), the training time and the
    final running loss per game.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if steps < 0:
        raise ValueError(f"steps must be at least 0, got {steps}")
    games = _games(games)
    policy = load_policy(preset, seed=seed)
    trainable, language = _parts(policy)
    language_before = {name: p.detach().clone() for name, p in language.items()}
    for parameter in language.values():
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)

    states = {game: GameStates(game, policy.image_size) for game in games}
    held_out = {game: held_out_set(states[game], recipe.held_out_images) for game in games}
    with torch.no_grad():
        probe = image_features(policy, held_out[games[0]].images[:1])
    _, tokens, hidden = probe.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = nn.ModuleDict(
            {g: ReadingHead(tokens, hidden, states[g].num_classes) for g in games}
        ).to(policy.device)

    parameters = [*trainable, *heads.parameters()]
    groups = [{"params": trainable}, {"params": list(heads.parameters()), "lr": recipe.head_lr}]
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _schedule(step, steps, recipe.warmup_steps)
    )
    rng = np.random.default_rng(seed)
    running: dict[str, float] = {}
    policy.model.train()
    start = time.perf_counter()
    bar = progress_bar(range(steps), desc=f"vision {preset}", unit="step", enabled=progress)
    for step in bar:
        game = games[step % len(games)]
        seeds = rng.integers(0, EVAL_SEED_BASE, recipe.batch_size)
        shift = shift_at(step, steps, recipe)
        images, targets = states[game].sample(seeds, rng, shift, recipe.shift_fraction)
        with _autocast(policy, recipe.bf16):
            features = image_features(policy, images)
        head = heads[game]
        loss = head.loss(head(features), targets.to(policy.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        running[game] = value if game not in running else 0.9 * running[game] + 0.1 * value
        bar.set_postfix({g: f"{v:.3f}" for g, v in running.items()}, refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    policy.model.eval()
    for parameter in policy.model.parameters():
        parameter.requires_grad_(True)

    for name, parameter in language.items():
        if not torch.equal(parameter.detach(), language_before[name]):
            raise AssertionError(f"vision pretraining changed a language parameter: {name}")
    accuracy = {
        game: reading_accuracy(policy, heads[game], held_out[game], bf16=recipe.bf16)
        for game in games
    }
    report = {
        "preset": preset,
        "games": list(games),
        "steps": steps,
        "seed": seed,
        "recipe": dataclasses.asdict(recipe),
        "train_seconds": round(seconds, 2),
        "steps_per_second": round(steps / seconds, 3) if seconds > 0 else None,
        "final_loss": running,
        "accuracy": accuracy,
    }
    return policy, report


# ------------------------------------------------------------------------------------ cache


def cache_dir() -> Path:
    """``$RLVLM_CACHE/vision``, or ``~/.cache/rlvlm/vision``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "rlvlm").expanduser() / "vision"


def _code_files() -> Iterator[Path]:
    """The code a cached tower depends on: this module, the presets (model, tokenizer and the
    critic saved beside them) and every game module (pictures, labels and the prompts the
    tokenizer is trained on)."""
    models = Path(__file__).parent
    yield from (models / name for name in ("vision.py", "presets.py", "families.py"))
    yield models / "value_head.py"
    yield models / "tokenizer.py"
    games = Path(inspect.getfile(get_game)).parent
    yield from sorted(games.glob("*.py"))


def code_version() -> str:
    """A hash of the code files above and of the transformers and torch versions."""
    import transformers

    digest = hashlib.sha256()
    for path in _code_files():
        digest.update(f"{path.parent.name}/{path.name}\0".encode())
        digest.update(path.read_bytes())
    digest.update(f"transformers {transformers.__version__} torch {torch.__version__}".encode())
    return digest.hexdigest()


def cache_key(
    preset: str, games: Sequence[str] | str, steps: int, seed: int, recipe: VisionRecipe
) -> str:
    """A readable, collision-safe directory name for one pretraining run."""
    games = _games(games)
    settings = {
        "preset": preset,
        "games": games,
        "steps": steps,
        "seed": seed,
        "recipe": dataclasses.asdict(recipe),
        "code": code_version(),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return f"{preset}-{'+'.join(games)}-{steps}-s{seed}-{digest[:16]}"


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (where the platform has flock), so that two
    processes asking for the same tower train it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def cached_vision_checkpoint(
    preset: str,
    games: Sequence[str] | str,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    progress: bool = True,
    *,
    recipe: VisionRecipe = VisionRecipe(),
) -> tuple[Path, dict[str, Any]]:
    """The checkpoint directory of a vision-pretrained preset, and its report.

    Trained by ``pretrain_vision`` the first time, then read from the cache
    (``cache_dir()``). The checkpoint is written atomically and its report
    (``<dir>.json``) after it, so an entry with a report is complete.
    """
    key = cache_key(preset, games, steps, seed, recipe)
    path = cache_dir() / key
    report_path = path.with_name(key + REPORT_SUFFIX)
    with _locked(path.with_name(f".{key}.lock")):
        if (path / RLVLM_FILE).is_file() and report_path.is_file():
            return path, json.loads(report_path.read_text())
        policy, report = pretrain_vision(preset, games, steps, seed, progress, recipe=recipe)
        policy.base = str(path.resolve())  # what an adapter trained on top loads
        policy.save(path)
        report["code_version"] = code_version()
        write_json(report_path, report)
    return path, report
