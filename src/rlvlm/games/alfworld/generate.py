"""ALFWorld games made offline: rooms from the floor plans the alfworld package ships, objects
arranged at random, a task of one of the six types, written as the package's own game files.

A game is what ``alfworld-download`` would fetch: ``game.tw-pddl`` (the ALFRED PDDL domain, the
text grammar with the goal filled in, and a PDDL problem) beside ``traj_data.json`` (the task
type and its targets, which the package's expert reads). Everything is drawn from one seed.

The floor plans give each room's receptacles and the spot an agent stands to use each one.
Where a plan lists a receptacle class without a spot (many kitchens lack their stove burners,
for example), the room gets instances of it at navigable points, drawn from the plan's own
number, so a room is the same in every game. Objects are the plan's pickupable classes, one
to three of each, each put in a receptacle that may hold it (the package's
``VAL_RECEPTACLE_OBJECTS``), lamps on a desk, table, dresser or shelf.

The split mirrors the official one: ``valid_unseen`` uses the four held-out rooms of ALFRED's
unseen validation set (one kitchen, living room, bedroom and bathroom), ``train`` and
``valid_seen`` the other 116, with arrangements drawn from streams of their own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from rlvlm.games.alfworld import engine

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
SPLITS = ("train", "valid_seen", "valid_unseen")
#: ALFRED's unseen validation rooms: a kitchen, a living room, a bedroom and a bathroom.
UNSEEN_FLOOR_PLANS = (10, 219, 308, 424)
ROOM_TYPES = {
    "kitchen": range(1, 31),
    "living room": range(201, 231),
    "bedroom": range(301, 331),
    "bathroom": range(401, 431),
}
#: Rooms in which ALFRED poses each task type (its ``GOALS_VALID``).
TASK_ROOMS = {
    "pick_and_place_simple": {"kitchen", "living room", "bedroom", "bathroom"},
    "pick_two_obj_and_place": {"kitchen", "living room", "bedroom", "bathroom"},
    "look_at_obj_in_light": {"living room", "bedroom"},
    "pick_clean_then_place_in_recep": {"kitchen", "bathroom"},
    "pick_heat_then_place_in_recep": {"kitchen"},
    "pick_cool_then_place_in_recep": {"kitchen"},
}
#: The receptacle each state-change task needs, and the property its object must have.
STATE_CHANGE = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "Cleanable"),
    "pick_heat_then_place_in_recep": ("Microwave", "Heatable"),
    "pick_cool_then_place_in_recep": ("Fridge", "Coolable"),
}
LAMPS = ("DeskLamp", "FloorLamp")
LAMP_STANDS = ("Desk", "SideTable", "Dresser", "Shelf", "CoffeeTable", "DiningTable", "TVStand")
#: How many of a receptacle class a room gets when its floor plan gives no spots for it.
MISSING_RECEPTACLE_COUNT = {"StoveBurner": 4, "Cabinet": 4, "Drawer": 3}
MAX_INSTANCES = 3  # of each object class, as in ALFRED's scene randomisation
GRID = 0.25  # metres per navigation step: locations are named in these units


def room_type(floor_plan: int) -> str:
    return next(name for name, plans in ROOM_TYPES.items() if floor_plan in plans)


def split_floor_plans(split: str) -> tuple[int, ...]:
    """The rooms a split's games are set in."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "valid_unseen":
        return UNSEEN_FLOOR_PLANS
    return tuple(plan for plan in all_floor_plans() if plan not in UNSEEN_FLOOR_PLANS)


@cache
def all_floor_plans() -> tuple[int, ...]:
    names = engine.layout_dir().glob("FloorPlan*-objects.json")
    return tuple(sorted(int(path.name.split("-")[0].removeprefix("FloorPlan")) for path in names))


# ------------------------------------------------------------------------------------ rooms


@dataclass(frozen=True)
class Receptacle:
    id: str  # ALFRED's id, e.g. "Cabinet|+00.68|+00.50|-02.20"
    kind: str  # its class, e.g. "Cabinet"
    location: str  # where an agent stands to use it, e.g. "loc|0|-5|2|30"


@dataclass(frozen=True)
class Room:
    floor_plan: int
    receptacles: tuple[Receptacle, ...]
    object_kinds: tuple[str, ...]  # pickupable classes the floor plan lists
    lamps: tuple[str, ...]
    points: tuple[tuple[float, float], ...]  # navigable (x, z)

    def kinds(self) -> set[str]:
        return {r.kind for r in self.receptacles}


def _location(x: float, z: float, rotation: int, horizon: int) -> str:
    return f"loc|{round(x / GRID)}|{round(z / GRID)}|{rotation // 90 % 4}|{horizon}"


@cache
def load_room(floor_plan: int) -> Room:
    """The room of a floor plan: its receptacles, where each is used, and what may lie in it."""
    constants = engine.constants()
    stem = engine.layout_dir() / f"FloorPlan{floor_plan}"
    listed = json.loads(Path(f"{stem}-objects.json").read_text())
    spots = json.loads(Path(f"{stem}-openable.json").read_text())
    points = tuple((float(x), float(z)) for x, z in np.load(f"{stem}-layout.npy"))
    holders = set(constants.VAL_RECEPTACLE_OBJECTS)

    receptacles = []
    for rid, (x, z, rotation, horizon) in sorted(spots.items()):
        kind = rid.split("|")[-1] if rid.endswith("Basin") else rid.split("|")[0]
        if kind in holders:
            receptacles.append(Receptacle(rid, kind, _location(x, z, int(rotation), int(horizon))))
    placed = {r.kind for r in receptacles}
    missing = sorted(
        kind
        for kind in listed
        if kind in holders and kind not in constants.MOVABLE_RECEPTACLES_SET and kind not in placed
    )
    rng = np.random.default_rng([floor_plan, 7])  # the room's own stream: the same every game
    for kind in missing:
        for _ in range(MISSING_RECEPTACLE_COUNT.get(kind, 1)):
            x, z = points[int(rng.integers(len(points)))]
            height = float(rng.uniform(0.0, 1.5))
            rid = f"{kind}|{x:+06.2f}|{height:+06.2f}|{z:+06.2f}"
            location = _location(x, z, 90 * int(rng.integers(4)), 30)
            receptacles.append(
                Receptacle(_unique(rid, {r.id for r in receptacles}), kind, location)
            )

    storable = set().union(*constants.VAL_RECEPTACLE_OBJECTS.values())
    objects = tuple(sorted(k for k in set(listed) if k in storable and "Sliced" not in k))
    lamps = tuple(sorted(k for k in set(listed) if k in LAMPS))
    return Room(floor_plan, tuple(receptacles), objects, lamps, points)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}|{n}", n + 1
    return candidate


# ------------------------------------------------------------------------------ arrangement


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    receptacle: Receptacle


def arrange(room: Room, rng: np.random.Generator) -> list[Item]:
    """One to three of each object class, each in a random receptacle that may hold it."""
    constants = engine.constants()
    items: list[Item] = []
    taken = {r.id for r in room.receptacles}

    def put(kind: str, holders: Sequence[Receptacle]) -> None:
        receptacle = holders[int(rng.integers(len(holders)))]
        _, x, y, z = [*receptacle.id.split("|"), "0", "0", "0"][:4]
        offset = rng.uniform(-0.3, 0.3, 3)
        coords = [float(v) + d for v, d in zip((x, y, z), offset, strict=True)]
        item_id = _unique(f"{kind}|{coords[0]:+06.2f}|{coords[1]:+06.2f}|{coords[2]:+06.2f}", taken)
        taken.add(item_id)
        items.append(Item(item_id, kind, receptacle))

    for kind in room.object_kinds:
        holders = [
            r for r in room.receptacles if kind in constants.VAL_RECEPTACLE_OBJECTS.get(r.kind, ())
        ]
        if holders:
            for _ in range(int(rng.integers(1, MAX_INSTANCES + 1))):
                put(kind, holders)
    stands = [r for r in room.receptacles if r.kind in LAMP_STANDS]
    for lamp in room.lamps:
        if stands:
            put(lamp, stands)
    return items


# ------------------------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class TaskParams:
    task_type: str
    object_target: str
    parent_target: str = ""
    toggle_target: str = ""

    def traj_data(self, floor_plan: int, name: str) -> dict[str, Any]:
        """The part of ALFRED's ``traj_data.json`` the package reads."""
        return {
            "task_id": name,
            "task_type": self.task_type,
            "pddl_params": {
                "object_target": self.object_target,
                "parent_target": self.parent_target,
                "toggle_target": self.toggle_target,
                "mrecep_target": "",
                "object_sliced": False,
            },
            "scene": {"floor_plan": f"FloorPlan{floor_plan}", "scene_num": floor_plan},
        }


def candidate_tasks(task_type: str, room: Room, items: Sequence[Item]) -> list[TaskParams]:
    """Every task of a type this arrangement poses: its object is somewhere to be found, and
    no object of its kind already sits in a receptacle of the target kind."""
    constants = engine.constants()
    if room_type(room.floor_plan) not in TASK_ROOMS[task_type]:
        return []
    count: dict[str, int] = {}
    for item in items:
        count[item.kind] = count.get(item.kind, 0) + 1
    pickupable = [kind for kind in count if kind not in LAMPS]
    if task_type == "look_at_obj_in_light":
        lamps = [kind for kind in count if kind in LAMPS]
        return [
            TaskParams(task_type, kind, toggle_target=lamp) for lamp in lamps for kind in pickupable
        ]
    needs = 2 if task_type == "pick_two_obj_and_place" else 1
    tool, ability = STATE_CHANGE.get(task_type, (None, None))
    if tool is not None and tool not in room.kinds():
        return []
    tasks = []
    for kind in pickupable:
        if count[kind] < needs:
            continue
        if ability is not None and kind not in constants.VAL_ACTION_OBJECTS[ability]:
            continue
        for parent in sorted(room.kinds()):
            if parent == tool or kind not in constants.VAL_RECEPTACLE_OBJECTS[parent]:
                continue
            if any(item.kind == kind and item.receptacle.kind == parent for item in items):
                continue
            tasks.append(TaskParams(task_type, kind, parent))
    return tasks


def goal_text(params: TaskParams, rng: np.random.Generator) -> str:
    """The goal sentence, from the package's own templates, e.g. 'put some apple on fridge'."""
    templates = engine.goal_library()[params.task_type]["templates"]
    template = templates[int(rng.integers(len(templates)))]
    return template.format(
        obj=params.object_target.lower(),
        recep=params.parent_target.lower(),
        toggle=params.toggle_target.lower(),
        mrecep="",
    )


# -------------------------------------------------------------------------------- PDDL text


_MANGLE = (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_"))


def mangle(name: str) -> str:
    """ALFRED's PDDL-safe spelling of an id: ``Apple|+01.00`` is ``Apple_bar__plus_01_dot_00``.

    >>> mangle("Apple|+01.00|-00.50")
    'Apple_bar__plus_01_dot_00_bar__minus_00_dot_50'
    """
    for char, word in _MANGLE:
        name = name.replace(char, word)
    return name


def pddl_problem(
    name: str, room: Room, items: Sequence[Item], start: str, params: TaskParams
) -> str:
    """The PDDL problem of a game, in the package's dialect of the ALFRED domain."""
    constants = engine.constants()
    abilities = {
        ability: constants.VAL_ACTION_OBJECTS[ability]
        for ability in ("Cleanable", "Heatable", "Coolable")
    }
    receptacles = room.receptacles
    locations = sorted({r.location for r in receptacles} | {start})
    # Declared as the package's own games declare them: every type, once.
    receptacle_kinds = sorted(constants.RECEPTACLES - constants.MOVABLE_RECEPTACLES_SET)
    object_kinds = sorted(constants.OBJECTS_SET - set(receptacle_kinds))

    declarations = ["agent1 - agent"]
    declarations += [f"{kind}Type - otype" for kind in object_kinds]
    declarations += [f"{kind}Type - rtype" for kind in receptacle_kinds]
    declarations += [f"{mangle(item.id)} - object" for item in items]
    declarations += [f"{mangle(r.id)} - receptacle" for r in receptacles]
    declarations += [f"{mangle(loc)} - location" for loc in locations]

    facts = [f"(atLocation agent1 {mangle(start)})"]
    for r in receptacles:
        rid = mangle(r.id)
        facts.append(f"(receptacleType {rid} {r.kind}Type)")
        facts.append(f"(receptacleAtLocation {rid} {mangle(r.location)})")
        if r.kind in constants.OPENABLE_CLASS_SET:
            facts.append(f"(openable {rid})")
    for kind in sorted(room.kinds()):
        held = sorted(set(constants.VAL_RECEPTACLE_OBJECTS[kind]) & set(object_kinds))
        facts += [f"(canContain {kind}Type {o}Type)" for o in held]
    for item in items:
        oid = mangle(item.id)
        facts.append(f"(objectType {oid} {item.kind}Type)")
        facts.append(f"(inReceptacle {oid} {mangle(item.receptacle.id)})")
        facts.append(f"(objectAtLocation {oid} {mangle(item.receptacle.location)})")
        if item.kind in LAMPS:
            facts.append(f"(toggleable {oid})")
            continue
        facts.append(f"(pickupable {oid})")
        if item.kind in constants.MOVABLE_RECEPTACLES_SET:
            facts.append(f"(isReceptacleObject {oid})")
        for ability, kinds in abilities.items():
            if item.kind in kinds:
                facts.append(f"({ability.lower()} {oid})")

    goal = (
        engine.goal_library()[params.task_type]["pddl"]
        .format(
            obj=params.object_target,
            recep=params.parent_target,
            toggle=params.toggle_target,
            mrecep="",
        )
        .replace("#", "-")
    )
    indent = "\n        "
    return (
        f"(define (problem {name})\n(:domain alfred)\n(:objects{indent}"
        + indent.join(declarations)
        + f"\n    )\n(:init{indent}"
        + indent.join(facts)
        + f"\n    )\n{goal}"
    )


# ------------------------------------------------------------------------------------ games


@dataclass(frozen=True)
class GeneratedGame:
    name: str  # the directory name, as in the official data: <type>-<object>-<mrecep>-...
    game: dict[str, Any]  # game.tw-pddl
    traj_data: dict[str, Any]  # traj_data.json

    @property
    def task_type(self) -> str:
        return self.traj_data["task_type"]

    def write(self, directory: str | Path) -> Path:
        """Write the game to ``directory/<name>/trial_<seed>/``; returns its game file."""
        from rlvlm.io import write_json

        trial = Path(directory) / self.name / f"trial_{self.traj_data['task_id']}"
        write_json(trial / "traj_data.json", self.traj_data)
        return write_json(trial / engine.GAME_FILE, self.game)


def _start(room: Room, rng: np.random.Generator) -> str:
    """A navigable spot away from every receptacle: the agent starts in the middle of the room."""
    spots = {tuple(r.location.split("|")[1:3]) for r in room.receptacles}
    free = [p for p in room.points if tuple(_location(*p, 0, 30).split("|")[1:3]) not in spots]
    x, z = (free or room.points)[int(rng.integers(len(free or room.points)))]
    return _location(x, z, 90 * int(rng.integers(4)), 30)


def generate_game(
    seed: int,
    split: str = "train",
    task_type: str | None = None,
    max_steps: int = 50,
    check: engine.Engine | None = None,
) -> GeneratedGame:
    """The game of ``seed`` in ``split``: a room, an arrangement and a task, drawn until the
    package's expert, played on the ``check`` engine, wins it within ``max_steps`` steps
    (every game rlvlm plays or writes is checked; ``check=None`` skips it, for tests).

    The task type is drawn uniformly unless given, then a room of the split that can pose it.
    """
    if task_type is not None and task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; choose from {', '.join(TASK_TYPES)}")
    plans = split_floor_plans(split)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    for attempt in range(1000):
        kind = task_type or TASK_TYPES[int(rng.integers(len(TASK_TYPES)))]
        rooms = [plan for plan in plans if room_type(plan) in TASK_ROOMS[kind]]
        room = load_room(rooms[int(rng.integers(len(rooms)))])
        items = arrange(room, rng)
        tasks = candidate_tasks(kind, room, items)
        if not tasks:
            continue
        params = tasks[int(rng.integers(len(tasks)))]
        start = _start(room, rng)
        task_id = f"{split}_{seed}" + (f"_{attempt}" if attempt else "")
        name = (
            f"{params.task_type}-{params.object_target}-None-"
            f"{params.parent_target or params.toggle_target}-{room.floor_plan}"
        )
        grammar = engine.grammar().replace("UNKNOWN GOAL", goal_text(params, rng))
        game = {
            "pddl_domain": engine.domain(),
            "grammar": grammar,
            "pddl_problem": pddl_problem(f"plan_{task_id}", room, items, start, params),
            "solvable": True,
        }
        candidate = GeneratedGame(name, game, params.traj_data(room.floor_plan, task_id))
        if check is None or engine.expert_wins(check, game, candidate.traj_data, max_steps, seed):
            return candidate
    raise RuntimeError(f"no game the expert wins for seed {seed} in {split}")


def write_suite(
    out: str | Path,
    games: int,
    split: str = "train",
    seed: int = 0,
    max_steps: int = 50,
    progress: bool = False,
) -> list[Path]:
    """Write ``games`` checked games of ``split`` under ``out/json_2.1.1/<split>/``, the tree
    ``alfworld-download`` makes, so ``ALFWORLD_DATA=out`` plays them. The task types take
    turns, so every type appears once there are six games. Returns the game files."""
    from rlvlm.progress import progress_bar

    if games < 1:
        raise ValueError(f"games must be 1 or more, got {games}")
    split_floor_plans(split)  # an unknown split fails here, naming the valid ones
    directory = Path(out) / "json_2.1.1" / split
    checker = engine.Engine()
    paths = []
    try:
        bar = progress_bar(range(games), desc=f"{split} games", unit="game", enabled=progress)
        for index in bar:
            game_seed = int(np.random.default_rng([seed, index]).integers(1 << 62))
            task_type = TASK_TYPES[index % len(TASK_TYPES)]
            game = generate_game(game_seed, split, task_type, max_steps, check=checker)
            paths.append(game.write(directory))
    finally:
        checker.close()
    return paths
