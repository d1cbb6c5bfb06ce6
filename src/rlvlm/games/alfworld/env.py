"""ALFWorld: household tasks in text, played on the alfworld package's engine, with a picture."""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from rlvlm.games import render
from rlvlm.games.alfworld import engine, generate
from rlvlm.games.base import GameEnv, Label, Task, reply_format
from rlvlm.games.parsing import ParsedAction, parse_choice
from rlvlm.seeds import EVAL_SEED_BASE

#: The action space's size. Rooms offer at most about 60 commands at a time; an index beyond
#: the admissible commands of the moment is an inadmissible action.
MAX_COMMANDS = 256
WIN_REWARD = 50.0
INADMISSIBLE_PENALTY = 1.0
OFFICIAL_SUBDIR = "json_2.1.1"
#: Games generated in this process, by (seed, split, task type): a reset replays one for free.
_GENERATED: OrderedDict[tuple, generate.GeneratedGame] = OrderedDict()


class ALFWorldView(NamedTuple):
    task: str  # the goal sentence
    task_type: str
    observation: str  # what the engine said last
    admissible: tuple[str, ...]
    receptacles: tuple[str, ...]  # the room's, e.g. ("cabinet 1", "countertop 1")
    at: str  # the receptacle the agent went to last, "" in the middle of the room
    closed: bool  # whether that receptacle is closed
    seen: tuple[str, ...]  # objects visible in or on it
    holding: str  # "" or e.g. "apple 1"
    expert_action: str  # the package's expert's next command (it has followed the episode)


# ------------------------------------------------------------------------------------ task

_ARTICLES = re.compile(r"\b(?:the|a|an|some)\s+")
_PUT = re.compile(r"^(?:put|place)\s+(.+?)\s+(?:in|on|into|onto|in/on)\s+(.+)$")
_PICK_UP = re.compile(r"^pick\s+up\s+")


def canonical_command(text: str) -> str:
    """A command in the engine's own words, so that near misses still name it: articles
    dropped, ``put/place X in/on Y`` read as ``move X to Y``, ``pick up`` as ``take``.

    >>> canonical_command("put the apple 1 in the fridge 1")
    'move apple 1 to fridge 1'
    >>> canonical_command("pick up a mug 2 from countertop 1")
    'take mug 2 from countertop 1'
    """
    text = _PICK_UP.sub("take ", _ARTICLES.sub("", text)).strip()
    return _PUT.sub(r"move \1 to \2", text)


def _situation(view: ALFWorldView) -> str:
    if not view.at:
        place = "I am in the middle of the room"
    elif view.closed:
        place = f"I am at {view.at}, which is closed"
    else:
        seen = ", ".join(view.seen) if view.seen else "nothing"
        place = f"I am at {view.at}, where I see {seen}"
    return f"{place}, and I hold {view.holding or 'nothing'}."


def _reason(view: ALFWorldView, command: str) -> str:
    """Why a command helps, in words that stay true whoever chose it."""
    verb = command.split(" ", 1)[0]
    target = command.split(" ", 1)[-1]
    reasons = {
        "go": f"I go to {target.removeprefix('to ')} to look there or use it.",
        "open": f"I open {target} to see what is inside.",
        "close": f"I close {target}.",
        "take": f"I take {target}.",
        "move": f"I put {target.replace(' to ', ' in/on ', 1)}.",
        "heat": f"I heat {target}.",
        "cool": f"I cool {target}.",
        "clean": f"I clean {target}.",
        "use": f"I switch on {target} to look at what I hold under it.",
        "examine": f"I examine {target}.",
        "look": "I look around.",
        "inventory": "I check what I hold.",
    }
    return reasons.get(verb, f"I choose '{command}'.")


@dataclass(frozen=True)
class ALFWorldTask(Task):
    game = "alfworld"
    action_names = ()  # the actions are the admissible commands of the moment

    def actions(self, view: ALFWorldView) -> tuple[str, ...]:
        return view.admissible

    def parse(self, reply: str, view: ALFWorldView | None = None) -> ParsedAction:
        """An admissible command of ``view``: exact, then in the engine's words
        (``canonical_command``), then the one admissible command the text names."""
        if view is None:
            raise ValueError("ALFWorld replies are read against the admissible commands of a view")
        return parse_choice(reply, view.admissible, canonical_command)

    def draw(self, view: ALFWorldView, size: int) -> np.ndarray:
        return draw_situation(view, size)

    def describe(self, view: ALFWorldView) -> str:
        return f"Task: {view.task}. {_situation(view)}"

    def feedback(self, view: ALFWorldView) -> str:
        return " ".join(view.observation.split())  # the engine's own words, as in the prompt

    def labels(self, view: ALFWorldView) -> list[Label]:
        return []  # no fixed categories to read off the picture

    def prompt(self, view: ALFWorldView, cot: bool = True) -> str:
        intro = (
            "You are an expert agent in a household from the ALFRED embodied environment. "
            "The image shows the task, the receptacles of the room, where you are, what you "
            "see there and what you hold.\n"
            f"Your task is to: {view.task}.\n"
            f"What you observe: {' '.join(view.observation.split())}\n"
            f"Your admissible actions are: {json.dumps(list(view.admissible))}.\n"
        )
        thoughts = (
            '"{first describe where you are, what you see and what you hold, then think '
            'about which admissible action brings the task closer}"'
        )
        fields = [("thoughts", thoughts)] if cot else []
        return intro + reply_format([*fields, ("action", '"an admissible action"')])

    def legal_actions(self, view: ALFWorldView) -> tuple[int, ...]:
        return tuple(range(len(view.admissible)))

    def oracle_action(self, view: ALFWorldView) -> int:
        if view.expert_action in view.admissible:
            return view.admissible.index(view.expert_action)
        return view.admissible.index("look") if "look" in view.admissible else 0

    def thoughts(self, view: ALFWorldView, action: int) -> dict[str, Any]:
        return {
            "thoughts": f"{_situation(view)} My task is to {view.task}. "
            f"{_reason(view, view.admissible[action])}"
        }

    def stated_facts(self, reply: str) -> dict[str, str]:
        # The whole reply, not its capped thoughts value: a long list of what is seen may
        # push the held object past the cap.
        reply, facts = reply.lower(), {}
        if place := _PLACE.search(reply):
            facts["location"] = place["at"] or "middle of the room"
        if held := _HOLDING.search(reply):
            facts["holding"] = held[1]
        return facts


_PLACE = re.compile(r"i am (?:at (?P<at>[^,.]{1,80})|in the middle of the room)")
_HOLDING = re.compile(r"i hold ([^,.]{1,80})\.")


# ---------------------------------------------------------------------------------- picture

SKY: render.Color = (34, 52, 86)
FLOOR: render.Color = (238, 234, 224)
TILE: render.Color = (208, 214, 226)
HERE: render.Color = (244, 170, 60)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _text(image: np.ndarray, text: str, x: int, y: int, size: int, color, background) -> None:
    render.paste(image, render.text_sprite(text, size, color, background), x, y)


def _fitted(text: str, size: int, width: int, background) -> np.ndarray:
    """``text`` at the largest size up to ``size`` that fits ``width`` pixels."""
    for points in range(size, 4, -1):
        sprite = render.text_sprite(text, points, render.BLACK, background)
        if sprite.shape[1] <= width:
            return sprite
    return sprite[:, :width]


def draw_situation(view: ALFWorldView, size: int) -> np.ndarray:
    """The task on a dark band, the room's receptacles as tiles (the one the agent stands at
    in orange), and below them where the agent is, what it sees and what it holds."""
    image = render.canvas(size, FLOOR)
    unit = size / 300
    small, line = max(round(9 * unit), 5), round(13 * unit)
    band = round(44 * unit)
    image[:band] = SKY
    for row, text in enumerate(_wrap(f"Task: {view.task}", 42)[:2]):
        _text(
            image,
            text,
            round(6 * unit),
            round((6 + 17 * row) * unit),
            round(12 * unit),
            render.WHITE,
            SKY,
        )

    columns = 3
    tile_w, tile_h, gap = (size - round(10 * unit)) // columns, round(13 * unit), round(2 * unit)
    top = band + round(5 * unit)
    shown = view.receptacles[: columns * 12]
    for i, name in enumerate(shown):
        x = round(5 * unit) + (i % columns) * tile_w
        y = top + (i // columns) * (tile_h + gap)
        fill = HERE if name == view.at else TILE
        image[y : y + tile_h, x : x + tile_w - gap] = fill
        sprite = _fitted(name, small, tile_w - 3 * gap, fill)
        render.paste(image, sprite, x + gap, y + (tile_h - sprite.shape[0]) // 2)

    y = top + ((len(shown) + columns - 1) // columns) * (tile_h + gap) + line // 2
    if not view.at:
        where = "At: the middle of the room"
    else:
        where = f"At: {view.at}" + (" (closed)" if view.closed else "")
    seen = "" if not view.at or view.closed else ", ".join(view.seen) or "nothing"
    lines = [
        where,
        *(_wrap(f"Sees: {seen}", 44)[:3] if seen else []),
        f"Holds: {view.holding or 'nothing'}",
    ]
    for text in lines:
        if y + line > size:
            break
        _text(image, text, round(6 * unit), y, round(11 * unit), render.BLACK, FLOOR)
        y += line
    return image


# -------------------------------------------------------------------------------------- env


def official_data_dir() -> Path | None:
    """``$ALFWORLD_DATA/json_2.1.1``, where ``alfworld-download`` puts the official games (and
    ``rlvlm alfworld generate`` puts a suite), if it exists."""
    root = os.environ.get("ALFWORLD_DATA")
    if root and (Path(root) / OFFICIAL_SUBDIR).is_dir():
        return Path(root) / OFFICIAL_SUBDIR
    return None


def game_files(data_dir: Path, split: str) -> list[Path]:
    """The playable games of a split, as ``AlfredTWEnv`` collects them: a game file beside its
    ``traj_data.json``, marked solvable, no movable-receptacle or sliced tasks."""
    games = []
    for traj in sorted((data_dir / split).rglob(engine.TRAJ_FILE)):
        game = traj.parent / engine.GAME_FILE
        if "movable" in str(traj.parent) or "Sliced" in str(traj.parent) or not game.is_file():
            continue
        games.append(game)
    return games


class ALFWorldEnv(GameEnv):
    """A household task of ALFWorld (text), with a picture of the agent's situation.

    ## Games
    Each episode is one game of a split (``train``, ``valid_seen``, ``valid_unseen``): from
    the official data where ``$ALFWORLD_DATA/json_2.1.1/<split>`` exists (``alfworld-download``
    or ``rlvlm alfworld generate`` puts games there), otherwise generated on the fly from the
    reset seed (``rlvlm.games.alfworld.generate``), each won by the package's expert within
    50 steps, the paper's episode limit. Without ``split``, seeds from ``2**32`` on (rlvlm's
    held-out evaluation seeds) play ``valid_unseen`` and lower ones ``train``. ``task_type``
    keeps generated games to one of the six types.

    ## Actions
    ``i`` is the ``i``-th admissible command of the moment (``info["admissible_commands"]``,
    sorted, e.g. ``go to fridge 1``); a larger index is an inadmissible action: nothing
    happens. Played by text (``TextActions``), a reply is read against those commands.

    ## Observation
    A picture (image_size x image_size RGB) drawn by rlvlm, since the 3D simulator cannot run
    here: the task, the room's receptacles with the one the agent is at highlighted, what it
    sees there and what it holds. ``info["observation"]`` is the engine's text.

    ## Rewards
    As in Zhai et al. (2024): every step earns ``50 * won + goal-condition success rate``
    (the share of the task's goal conditions met now, ALFRED's sub-goal progress in [0, 1]),
    minus 1 for an inadmissible action.

    ## Episode end
    Terminated when the task is done (``info["won"]``); truncated after ``max_steps`` steps.
    ``info["task_type"]`` names the task type.

    ## Version history
    v0: the alfworld 0.4.2 text engine, generated or official games, rlvlm's pictures.
    """

    def __init__(
        self,
        split: str | None = None,
        task_type: str | None = None,
        max_steps: int = 50,
        image_size: int = 300,
        render_mode: str | None = None,
    ):
        super().__init__(image_size, render_mode)
        if split is not None and split not in generate.SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(generate.SPLITS)}")
        if task_type is not None and task_type not in generate.TASK_TYPES:
            choices = ", ".join(generate.TASK_TYPES)
            raise ValueError(f"unknown task type {task_type!r}; choose from {choices}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        self.split, self.task_type, self.max_steps = split, task_type, max_steps
        self.task = ALFWorldTask()
        self.action_space = spaces.Discrete(MAX_COMMANDS)
        self.engine = engine.Engine()
        self.data_dir = official_data_dir()
        self._split = split or "train"
        self.steps = 0
        self._state: engine.State | None = None
        self._view: ALFWorldView | None = None
        self._receptacles: tuple[str, ...] = ()
        self._at = ""
        self._progress = 0.0

    # --------------------------------------------------------------------------- episodes

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None and self.split is None:  # held-out seeds play unseen rooms
            self._split = "valid_unseen" if seed >= EVAL_SEED_BASE else "train"
        game_seed = int(self.np_random.integers(1 << 62))
        game, traj_data = self._game(game_seed, options or {})
        self.engine.load(game, traj_data)
        self._state = self.engine.reset(game_seed)
        self._receptacles = _receptacles_of(self._state.feedback)
        self._at, self.steps = "", 0
        self._progress = self._goal_progress()
        self._view = self._make_view()
        return self.observe(), self._info(invalid_action=False)

    def _game(self, seed: int, options: dict[str, Any]) -> tuple[dict, dict]:
        if "game_file" in options:
            path = Path(options["game_file"])
            return _read_game(path)
        if self.data_dir is not None and (self.data_dir / self._split).is_dir():
            files = game_files(self.data_dir, self._split)
            if self.task_type:
                files = [f for f in files if f.parent.parent.name.startswith(self.task_type)]
            if not files:
                raise ValueError(f"no games of {self._split} in {self.data_dir}")
            return _read_game(files[seed % len(files)])
        key = (seed, self._split, self.task_type)
        if key not in _GENERATED:
            _GENERATED[key] = generate.generate_game(
                seed, self._split, self.task_type, check=self.engine
            )
            while len(_GENERATED) > 64:
                _GENERATED.popitem(last=False)
        generated = _GENERATED[key]
        return generated.game, generated.traj_data

    def step(self, action: int):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in 0..{MAX_COMMANDS - 1}, got {action!r}")
        action = int(action)
        admissible = action < len(self._state.admissible)
        if admissible:
            command = self._state.admissible[action]
            self._state = self.engine.step(command)
            if command.startswith("go to "):
                self._at = command.removeprefix("go to ")
        else:  # the engine would answer the same, at the cost of a full step
            self._state = engine.State(
                "Nothing happens.", self._state.admissible, self._state.won, self._state.facts
            )
        self.steps += 1
        self._progress = self._goal_progress()
        penalty = 0.0 if admissible else INADMISSIBLE_PENALTY
        reward = WIN_REWARD * self._state.won + self._progress - penalty
        terminated = self._state.won
        truncated = not terminated and self.steps >= self.max_steps
        self._view = self._make_view()
        info = self._info(invalid_action=not admissible)
        return self.observe(), float(reward), terminated, truncated, info

    def close(self) -> None:
        self.engine.close()
        super().close()

    def _goal_progress(self) -> float:
        """The goal-condition success rate: the share of the task's goal conditions met now."""
        met, total = engine.goal_conditions(self.engine.traj_data, self._state.facts)
        return met / total

    # ------------------------------------------------------------------------------ views

    def view(self) -> ALFWorldView:
        if self._view is None:
            raise RuntimeError("call reset() before view()")
        return self._view

    def _make_view(self) -> ALFWorldView:
        facts = self._state.facts
        holding = next((f[2] for f in facts if f[0] == "holds"), "")
        closed = (
            any(f == ("openable", self._at) for f in facts) and ("opened", self._at) not in facts
        )
        seen = tuple(sorted(f[1] for f in facts if f[0] == "inreceptacle" and f[2] == self._at))
        traj = self.engine.traj_data
        return ALFWorldView(
            task=_goal_of(self.engine),
            task_type=traj["task_type"],
            observation=self._state.feedback,
            admissible=self._state.admissible[:MAX_COMMANDS],
            receptacles=self._receptacles,
            at=self._at,
            closed=bool(self._at) and closed,
            seen=() if closed else seen,
            holding=holding,
            expert_action=self.engine.expert_action,
        )

    def _info(self, **extra: Any) -> dict[str, Any]:
        view = self.view()
        info = super()._info(**extra)
        return info | {
            "observation": view.observation,
            "admissible_commands": list(view.admissible),
            "task": view.task,
            "task_type": view.task_type,
            "won": bool(self._state.won),
            "goal_condition_success_rate": self._progress,
        }


def _read_game(path: Path) -> tuple[dict, dict]:
    traj = path.parent / engine.TRAJ_FILE
    try:
        return json.loads(path.read_text()), json.loads(traj.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the ALFWorld game {path}: {error}") from None


def _receptacles_of(intro: str) -> tuple[str, ...]:
    """The receptacles the opening text lists, in a stable order ("cabinet 2" before 10)."""
    listed = intro.split("you see", 1)[-1].split("Your task is to", 1)[0]
    names = [re.sub(r"^(?:and\s+)?an?\s+", "", part.strip(" .\n")) for part in listed.split(",")]
    names = [name for name in names if name and name != "nothing"]

    def order(name: str) -> tuple[str, int]:
        kind, _, number = name.rpartition(" ")
        return (kind, int(number)) if number.isdigit() else (name, 0)

    return tuple(sorted(set(names), key=order))


def _goal_of(game_engine: engine.Engine) -> str:
    """The goal sentence of the loaded game, as its grammar states it."""
    intro = game_engine.intro
    found = re.search(r"Your task is to: (.*?)\.?\s*$", intro, re.S)
    return found.group(1).strip() if found else ""
