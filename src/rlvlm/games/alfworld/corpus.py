"""The ALFWorld text a tiny preset's tokenizer learns from, written once and shipped, so that
building the preset needs neither the alfworld extra nor its engine.

    python -m rlvlm.games.alfworld.corpus src/rlvlm/models/corpora/alfworld.txt.gz

plays the expert through generated ``train`` games (all six task types; held-out rooms never)
and writes each distinct line of what the model reads and writes there: the prompts with and
without chain of thought, the expert's reply and replies taking other admissible commands.
Lines, not whole prompts, because a prompt repeats most of the last one; a tokenizer needs
the words, and each distinct line once keeps the file small.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rlvlm.games import make
from rlvlm.io import write_atomic

GAMES = 60
OTHER_REPLIES = 3  # replies with other admissible commands, per step
SEED = 0


def alfworld_lines(games: int = GAMES, seed: int = SEED) -> Iterator[str]:
    """Each distinct line of the prompts and replies of ``games`` expert episodes, in the
    order first met (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    env = make("alfworld", split="train", image_size=32)
    game, seen = env.unwrapped, set()
    try:
        for episode in range(games):
            env.reset(seed=seed * games + episode)
            done = False
            while not done:
                view = game.view()
                expert = game.task.oracle_action(view)
                others = rng.choice(len(view.admissible), OTHER_REPLIES)
                texts = [
                    game.task.prompt(view),
                    game.task.prompt(view, cot=False),
                    game.task.feedback(view),
                    *(game.task.reply(view, int(a)) for a in (expert, *others)),
                ]
                for line in (line for text in texts for line in text.splitlines()):
                    if line not in seen:
                        seen.add(line)
                        yield line
                _, _, terminated, truncated, _ = env.step(expert)
                done = terminated or truncated
    finally:
        env.close()


def write_corpus(path: Path, games: int = GAMES) -> int:
    """Write the corpus gzipped (reproducibly: no timestamp); the number of lines."""
    lines = list(alfworld_lines(games))
    text = "\n".join(lines) + "\n"
    write_atomic(path, gzip.compress(text.encode(), compresslevel=9, mtime=0))
    return len(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m rlvlm.games.alfworld.corpus OUT.txt.gz")
    count = write_corpus(Path(sys.argv[1]))
    print(f"{count} lines written to {sys.argv[1]}")
