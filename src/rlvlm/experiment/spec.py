"""Experiment specs: a base config crossed with axes, one ordinary training run per cell.

A spec is a small YAML file (shipped ones live in ``configs/experiments/``)::

    name: table2                  # the folder under experiments/ (default: the file's name)
    description: the paper's Table 2, four card games x three seeds
    config: tiny/{game}           # each cell's config; {game} is the cell's game
    overrides: [eval.every=2]     # key=value for every cell
    axes:                         # every combination of these values is a cell
      game: [numberline, ezpoints, blackjack, points24]
      seed: [0, 1, 2]
    budget: 15000                 # environment steps within which the peak is reported

Each cell is a run directory ``experiments/<name>/<cell>/`` that ``rlvlm train --resume``,
``rlvlm report`` and every other command reads like any run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from rlvlm.config import TrainConfig, config_names, load_config, read_yaml

SPEC = "experiment spec"
SPEC_KEYS = ("name", "description", "config", "overrides", "axes", "budget")


@dataclass(frozen=True)
class Cell:
    name: str
    axes: dict[str, Any]  # this cell's value of every axis
    config: TrainConfig  # what it runs, its run directory included (out, name)

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out) / self.name


@dataclass(frozen=True)
class Experiment:
    name: str
    config: str
    axes: dict[str, list[Any]]
    overrides: tuple[str, ...] = ()
    budget: int | None = None
    description: str = ""

    def cells(self, out: str | Path = "experiments") -> list[Cell]:
        """Every cell, in the order of the axes (the last one varies fastest). A bad key or
        value in any cell is a ValueError here, before anything runs."""
        root = Path(out) / self.name
        combinations = [
            dict(zip(self.axes, values, strict=True)) for values in product(*self.axes.values())
        ]
        names = _cell_names(combinations)
        cells = []
        for name, axes in zip(names, combinations, strict=True):
            source = self.config.format(game=axes.get("game", "{game}"))
            if "{game}" in source:
                raise ValueError(f"config {self.config!r} names {{game}} but no game axis")
            settings = [f"{key}={json.dumps(value)}" for key, value in axes.items()]
            try:
                config = load_config(
                    source, [*self.overrides, *settings, f"out={root}", f"name={name}"]
                )
            except ValueError as error:
                raise ValueError(f"cell {name}: {error}") from None
            cells.append(Cell(name, axes, config))
        return cells

    def select(self, cells: Sequence[Cell], only: Sequence[str]) -> list[Cell]:
        """The cells whose axes take every ``axis=value`` of ``only`` (several values of one
        axis: any of them): a slice of the grid to run, whose table still shows every cell.
        An axis the spec lacks, or a value that axis does not take, is a ValueError."""
        wanted: dict[str, list[Any]] = {}
        for item in only:
            key, sep, text = item.partition("=")
            if not sep or key not in self.axes:
                raise ValueError(f"{item!r} is not axis=value; the axes: {', '.join(self.axes)}")
            value = yaml.safe_load(text)
            if value not in self.axes[key]:
                raise ValueError(f"{item!r}: {key} takes {json.dumps(self.axes[key])} here")
            wanted.setdefault(key, []).append(value)
        return [cell for cell in cells if all(cell.axes[k] in v for k, v in wanted.items())]

    @property
    def seedless_axes(self) -> list[str]:
        """The axes that tell groups apart: all but the seed, over which groups average."""
        return [key for key in self.axes if key != "seed"]


def spec_names() -> list[str]:
    """The shipped specs, as ``paper/table2`` ..."""
    return config_names(SPEC)


def load_experiment(source: str | Path) -> Experiment:
    """A spec from a YAML file or a shipped name; a ValueError says what is wrong with it."""
    data = read_yaml(source, SPEC)
    path = Path(source)
    if unknown := sorted(set(data) - set(SPEC_KEYS)):
        raise ValueError(f"{path}: unknown keys {unknown}; a spec has {', '.join(SPEC_KEYS)}")
    axes = data.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise ValueError(f"{path}: axes must map config keys to lists of values")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: axis {key!r} must be a non-empty list of values")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list):
        raise ValueError(f"{path}: overrides must be a list of key=value strings")
    budget = data.get("budget")
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise ValueError(f"{path}: budget must be a positive number of environment steps")
    return Experiment(
        name=str(data.get("name") or path.stem),
        config=str(data.get("config") or "tiny/{game}"),
        axes={str(key): list(values) for key, values in axes.items()},
        overrides=tuple(str(item) for item in overrides),
        budget=budget,
        description=str(data.get("description") or ""),
    )


def _cell_names(combinations: list[dict[str, Any]]) -> list[str]:
    """Short, unique run-directory names: the game as it is, other axes as key and value
    (``ezpoints-seed1``, ``numberline-thought_coef0.3-seed0``), dotted keys in full only
    where their last parts would clash.

    >>> _cell_names([{"game": "ezpoints", "seed": 1}, {"game": "ezpoints", "ppo.cot": False}])
    ['ezpoints-seed1', 'ezpoints-cotfalse']
    >>> _cell_names([{"model.freeze": ["vision"]}, {"model.freeze": []}])
    ['freeze_vision', 'freeze_none']
    """

    def text_of(value: Any) -> str:
        if isinstance(value, list):  # a list value: its items, or "none"
            return "_" + ("+".join(map(text_of, value)) or "none")
        return json.dumps(value).strip('"').replace("/", "_").replace(" ", "")

    def name(axes: dict[str, Any], short: bool) -> str:
        parts = []
        for key, value in axes.items():
            text = text_of(value)
            label = key.rsplit(".")[-1] if short else key
            parts.append(text if key == "game" else f"{label}{text}")
        return "-".join(parts)

    names = [name(axes, short=True) for axes in combinations]
    if len(set(names)) < len(names):
        names = [name(axes, short=False) for axes in combinations]
    if len(set(names)) < len(names):
        raise ValueError("two cells of the grid are the same run; give each axis distinct values")
    return names
