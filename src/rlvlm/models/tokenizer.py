"""A small byte-level BPE tokenizer for the tiny presets, trained offline on the games' text."""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rlvlm.games import CARD_GAMES, make

CORPUS_SEEDS = range(200)
#: Text written once and shipped (see each file's writer).
CORPORA_DIR = Path(__file__).parent / "corpora"


def game_corpus(seeds: Sequence[int] = CORPUS_SEEDS) -> Iterator[str]:
    """Every game's prompts (with and without chain of thought) and truthful replies for every
    action, over fixed deals: the text a tiny model reads and writes."""
    for name in CARD_GAMES:
        env = make(name, image_size=32)
        game = env.unwrapped
        for seed in seeds:
            env.reset(seed=seed)
            view = game.view()
            yield game.task.prompt(view)
            yield game.task.prompt(view, cot=False)
            for action in range(len(game.task.action_names)):
                yield game.task.reply(view, action)
        env.close()


def alfworld_corpus() -> Iterator[str]:
    """Each distinct line of the prompts and replies of ALFWorld expert episodes on generated
    training games, as ``rlvlm.games.alfworld.corpus`` wrote them: no engine needed."""
    with gzip.open(CORPORA_DIR / "alfworld.txt.gz", "rt", encoding="utf-8") as file:
        yield from (line.rstrip("\n") for line in file)


#: The texts a tokenizer can be trained on, by name.
CORPORA = {"cards": game_corpus, "alfworld": alfworld_corpus}


def train_tokenizer(
    special_tokens: Sequence[str],
    image_token: str,
    eos_token: str,
    pad_token: str,
    vocab_size: int = 1024,
    corpora: Sequence[str] = ("cards",),
) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE over the named ``CORPORA`` (the card games' text by
    default); any byte sequence still encodes.

    ``special_tokens`` are the family's chat and image markers; they get the first ids.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(dict.fromkeys([pad_token, eos_token, image_token, *special_tokens])),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(chain.from_iterable(CORPORA[c]() for c in corpora), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=pad_token,
        eos_token=eos_token,
        extra_special_tokens={"image_token": image_token},
        additional_special_tokens=[t for t in special_tokens if t not in (pad_token, eos_token)],
        padding_side="left",
    )
