"""The alfworld package's text engine, its expert, and the goal conditions of each task type.

A game is played by TextWorld's PDDL engine on the ALFRED domain and grammar the package
ships, with the package's demangler turning ALFRED ids into names such as ``apple 1``. The
expert is the package's hand-coded one (``HandCodedTWAgent``), driven the way its
``AlfredExpert`` wrapper drives it (its first move is ``look``), except that a game needs no
file on disk and the expert's random choices come from a seeded stream.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import random
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

GAME_FILE = "game.tw-pddl"
TRAJ_FILE = "traj_data.json"
INSTALL_HINT = "ALFWorld needs the alfworld package: pip install 'rlvlm[alfworld]'"


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from None


def _package_dir() -> Path:
    return Path(_module("alfworld.gen.constants").__file__).parents[1]


def layout_dir() -> Path:
    return _package_dir() / "gen" / "layouts"


def constants():
    """ALFRED's object and receptacle tables (``alfworld.gen.constants``)."""
    return _module("alfworld.gen.constants")


@cache
def goal_library() -> dict[str, dict[str, Any]]:
    return _module("alfworld.gen.goal_library").gdict


@cache
def domain() -> str:
    return (_package_dir() / "data" / "alfred.pddl").read_text()


@cache
def grammar() -> str:
    return (_package_dir() / "data" / "alfred.twl2").read_text()


@contextlib.contextmanager
def _seeded_random(seed: Any) -> Iterator[None]:
    """Run the package's expert, which draws from the global ``random``, on a stream of its
    own, and leave the global stream as it was."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


@contextlib.contextmanager
def _kept_argv() -> Iterator[None]:
    """The PDDL translator overwrites ``sys.argv``; put it back."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


@dataclass
class State:
    """What the engine says after a reset or a step."""

    feedback: str
    admissible: tuple[str, ...]
    won: bool
    facts: tuple[tuple[str, ...], ...]  # (predicate, argument names ...), lower case


@cache
def _remember_parses() -> None:
    """Parse each text once. TextWorld translates a game's PDDL problem afresh on every load
    and reset (twice each time), most of a reset's second, and parses the grammar rule of
    every admissible command on every step, most of a step's time. Both depend only on their
    arguments, so the engine keeps them; a rule's symbols are copied, since deriving text
    from them changes them."""
    fast_downward = _module("fast_downward")
    fast_downward.pddl2sas = lru_cache(maxsize=32)(fast_downward.pddl2sas)
    textgen = _module("textworld.envs.pddl.textgen")
    parse = lru_cache(maxsize=4096)(textgen._parse_and_convert)

    def parse_copy(text: str, **kwargs: Any) -> Any:
        return copy.deepcopy(parse(text, **kwargs))

    textgen._parse_and_convert = parse_copy


class Engine:
    """One game at a time on TextWorld's PDDL engine, with the package's expert beside it."""

    def __init__(self) -> None:
        _remember_parses()
        textworld = _module("textworld")
        pddl = _module("textworld.envs.pddl")
        tw_env = _module("alfworld.agents.environment.alfred_tw_env")
        infos = textworld.EnvInfos(admissible_commands=True, won=True, facts=True)
        self._env = tw_env.AlfredDemangler(pddl.PddlEnv(infos))
        self._expert_module = _module("alfworld.agents.expert")
        self._expert = None
        self._game_state = None
        self.traj_data: dict[str, Any] = {}
        self.expert_seed: Any = 0
        self.expert_action: str = "look"
        self.intro = ""
        self.steps = 0

    def load(self, game: Mapping[str, Any], traj_data: Mapping[str, Any]) -> None:
        with _kept_argv():
            self._env.load(dict(game))
        self.traj_data = dict(traj_data)

    def reset(self, expert_seed: Any = 0) -> State:
        with _kept_argv():
            self._game_state = self._env.reset()
        self.steps = 0
        self.intro = self._game_state["feedback"]
        self.expert_seed = expert_seed
        self._expert = self._new_expert()
        self._expert.observe(self._game_state["feedback"])
        self.expert_action = "look"  # as AlfredExpert: the intro first, then the plan
        return self._state()

    def step(self, command: str) -> State:
        self._game_state, _, _ = self._env.step(command)
        self.steps += 1
        self.expert_action = self._next_expert_action(command)
        return self._state()

    def close(self) -> None:
        self._env.close()

    def _new_expert(self):
        params = {**self.traj_data["pddl_params"], "task_type": self.traj_data["task_type"]}
        objects = constants().OBJECTS
        params = {k: v.lower() if v in objects else v for k, v in params.items()}
        agent = self._expert_module.HandCodedTWAgent(max_steps=200)
        agent.task_params = params
        agent.policy = agent.get_task_policy(params)(params, max_steps=200)
        return agent

    def _next_expert_action(self, last_command: str) -> str:
        state = self._game_state
        # The expert predates the grammar's "move X to Y" and tracks what it holds by the
        # word "put"; without this it never lets go of a placed object in its memory.
        said = (
            "put" + last_command.removeprefix("move")
            if last_command.startswith("move ")
            else last_command
        )
        try:
            with _seeded_random(f"{self.expert_seed}-{self.steps}"):
                action = self._expert.act(state, 0, state["won"], said)
        except (  # the expert gave up, or its heuristics met a state they do not expect
            self._expert_module.HandCodedAgentTimeout,
            self._expert_module.HandCodedAgentFailed,
            IndexError,
            KeyError,
        ):
            return "look"  # what AlfredExpert suggests when it has no plan
        return action if action in state["admissible_commands"] else "look"

    def _state(self) -> State:
        state = self._game_state
        facts = tuple(
            (fact.name.lower(), *(name.strip().lower() for name in fact.names))
            for fact in state["facts"]
        )
        return State(
            state["feedback"], tuple(state["admissible_commands"]), bool(state["won"]), facts
        )


# ------------------------------------------------------------------------- goal conditions


def goal_conditions(traj_data: Mapping[str, Any], facts) -> tuple[int, int]:
    """(met, total) goal conditions of a task, as ALFRED counts them for its goal-condition
    success rate, read from the engine's facts.

    Pick and place: the object is in the receptacle (1). Pick two: each of two objects in one
    receptacle (2). Look in light: the object is held, the lamp is on where the agent stands
    (2). Clean, heat, cool: an object in the receptacle, an object changed, one object both (3).
    """
    params = traj_data["pddl_params"]
    task_type = traj_data["task_type"]
    kind_of: dict[str, str] = {}
    pairs: dict[str, set[tuple[str, ...]]] = {}
    for fact in facts:
        name, *args = fact
        if name in ("objecttype", "receptacletype"):
            kind_of[args[0]] = args[1].removesuffix("type")
        pairs.setdefault(name, set()).add(tuple(args))
    target = params["object_target"].lower()
    parent = (params.get("parent_target") or "").lower()
    targets = {o for o, kind in kind_of.items() if kind == target}
    inside = [
        (o, r)
        for o, r in pairs.get("inreceptacle", ())
        if o in targets and kind_of.get(r) == parent
    ]

    if task_type == "pick_and_place_simple":
        return int(bool(inside)), 1
    if task_type == "pick_two_obj_and_place":
        per_receptacle: dict[str, int] = {}
        for _, r in inside:
            per_receptacle[r] = per_receptacle.get(r, 0) + 1
        return min(max(per_receptacle.values(), default=0), 2), 2
    if task_type == "look_at_obj_in_light":
        lamp = params["toggle_target"].lower()
        held = any(o in targets for _, o in pairs.get("holds", ()))
        here = {loc for _, loc in pairs.get("atlocation", ())}
        lit_here = any(
            kind_of.get(o) == lamp
            and (o,) in pairs.get("istoggled", ())
            and (r, loc) in pairs.get("receptacleatlocation", ())
            for o, r in pairs.get("inreceptacle", ())
            for loc in here
        )
        return int(held) + int(lit_here), 2
    changed_by = {
        "pick_clean_then_place_in_recep": "isclean",
        "pick_heat_then_place_in_recep": "ishot",
        "pick_cool_then_place_in_recep": "iscool",
    }[task_type]
    changed = {o for (o,) in pairs.get(changed_by, ()) if o in targets}
    met = int(bool(inside)) + int(bool(changed)) + int(any(o in changed for o, _ in inside))
    return met, 3


def expert_wins(
    engine: Engine,
    game: Mapping[str, Any],
    traj_data: Mapping[str, Any],
    max_steps: int,
    seed: Any = 0,
) -> bool:
    """Whether the package's expert wins the game within ``max_steps`` steps."""
    engine.load(game, traj_data)
    engine.reset(seed)
    return any(engine.step(engine.expert_action).won for _ in range(max_steps))
