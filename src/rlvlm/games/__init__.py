"""The games, registered with gymnasium as ``rlvlm/<Name>-v0`` when rlvlm is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class Game:
    name: str  # the command-line name
    env_id: str  # the gymnasium id
    entry_point: str
    summary: str
    extra: str | None = None  # the pip extra the game needs, if any

    def make(self, **kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, **kwargs)


GAMES: dict[str, Game] = {
    game.name: game
    for game in (
        Game(
            "numberline",
            "rlvlm/NumberLine-v0",
            "rlvlm.games.numberline:NumberLineEnv",
            "move the current number to the target with + and -",
        ),
        Game(
            "ezpoints",
            "rlvlm/EZPoints-v0",
            "rlvlm.games.ezpoints:EZPointsEnv",
            "make 12 from two cards with + and *",
        ),
        Game(
            "points24",
            "rlvlm/Points24-v0",
            "rlvlm.games.points24:Points24Env",
            "make 24 from four cards with + - * / ( )",
        ),
        Game(
            "blackjack",
            "rlvlm/Blackjack-v0",
            "rlvlm.games.blackjack:BlackjackEnv",
            "beat the dealer: hit or stand",
        ),
        Game(
            "alfworld",
            "rlvlm/ALFWorld-v0",
            "rlvlm.games.alfworld:ALFWorldEnv",
            "household tasks: find, clean, heat, cool and place things",
            extra="alfworld",
        ),
    )
}
#: The picture games of the gym_cards suite: a fixed action set, labels to learn to read.
CARD_GAMES: tuple[str, ...] = ("numberline", "ezpoints", "points24", "blackjack")


def get_game(name: str) -> Game:
    """The game called ``name``, or a ValueError naming the valid choices."""
    try:
        return GAMES[name]
    except KeyError:
        raise ValueError(f"unknown game {name!r}; choose from {', '.join(GAMES)}") from None


def make(name: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` by command-line name, e.g. ``make("numberline", image_size=84)``."""
    return get_game(name).make(**kwargs)


for _game in GAMES.values():
    if _game.env_id not in gym.registry:
        gym.register(_game.env_id, entry_point=_game.entry_point)
