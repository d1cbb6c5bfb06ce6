"""Pictures of the games, composed from cached sprites.

Fonts, card faces and text snippets are drawn once per process and pasted with numpy
slicing, so a frame costs microseconds. The fonts are the DejaVu files that matplotlib
ships, found through the installed package, never the working directory.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rlvlm.games.cards import SUIT_SYMBOLS, Card

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (20, 20, 20)
RED: Color = (200, 20, 30)
FELT: Color = (16, 96, 48)
PAPER: Color = (250, 250, 245)


_caches: list = []


def cached(maxsize: int | None = None):
    """``functools.lru_cache`` that ``clear_caches`` knows about."""

    def decorate(function):
        wrapped = lru_cache(maxsize=maxsize)(function)
        _caches.append(wrapped)
        return wrapped

    return decorate


def _font_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rlvlm renders with matplotlib's DejaVu fonts: pip install matplotlib")
    return Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"


@cached()
def font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(_font_dir() / name), max(size, 1))


@cached(maxsize=4096)
def text_sprite(text: str, size: int, color: Color, background: Color) -> np.ndarray:
    """``text`` drawn tightly on ``background``, as an (h, w, 3) uint8 array."""
    face = font(size)
    left, top, right, bottom = face.getbbox(text or " ")
    image = Image.new("RGB", (max(right - left, 1), max(bottom - top, 1)), background)
    ImageDraw.Draw(image).text((-left, -top), text, font=face, fill=color)
    return _frozen(image)


def card_height(width: int) -> int:
    return round(width * 1.4)


@cached()
def card_sprite(card: Card, width: int) -> np.ndarray:
    """A card face: the rank large in the upper half, the suit large below, red or black."""
    height = card_height(width)
    image = _card_blank(width, height, PAPER)
    color = RED if card.is_red else BLACK
    draw = ImageDraw.Draw(image)
    rank_font = font(round(height * (0.36 if card.rank == "10" else 0.42)))
    draw.text((width / 2, height * 0.29), card.rank, font=rank_font, fill=color, anchor="mm")
    suit_font = font(round(height * 0.42), bold=False)
    draw.text(
        (width / 2, height * 0.71), SUIT_SYMBOLS[card.suit], font=suit_font, fill=color, anchor="mm"
    )
    return _frozen(image)


@cached()
def card_back(width: int) -> np.ndarray:
    """A face-down card: a blue back with a diagonal lattice."""
    height = card_height(width)
    image = _card_blank(width, height, (40, 70, 160))
    draw = ImageDraw.Draw(image)
    step = max(width // 6, 3)
    inset = max(width // 10, 2)
    for offset in range(-height, width, step):
        draw.line([(offset, 0), (offset + height, height)], fill=(150, 170, 230), width=1)
        draw.line([(offset + height, 0), (offset, height)], fill=(150, 170, 230), width=1)
    draw.rectangle([0, 0, width - 1, height - 1], outline=PAPER, width=inset)
    return _frozen(image)


def _card_blank(width: int, height: int, fill: Color) -> Image.Image:
    image = Image.new("RGB", (width, height), FELT)
    radius = max(width // 10, 2)
    ImageDraw.Draw(image).rounded_rectangle(
        [0, 0, width - 1, height - 1],
        radius=radius,
        fill=fill,
        outline=(90, 90, 90),
        width=max(width // 40, 1),
    )
    return image


def _frozen(image: Image.Image) -> np.ndarray:
    """A read-only array, so that a cached sprite can never be changed by a caller."""
    array = np.asarray(image, dtype=np.uint8).copy()
    array.flags.writeable = False
    return array


def canvas(size: int, color: Color) -> np.ndarray:
    """A fresh square image of one colour (a copy is ~60x faster than a broadcast fill)."""
    return _blank(size, color).copy()


@cached()
def _blank(size: int, color: Color) -> np.ndarray:
    return np.full((size, size, 3), color, dtype=np.uint8)


def paste(target: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Copy ``sprite`` onto ``target`` with its top-left corner at (x, y), clipped to fit."""
    height, width = target.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + sprite.shape[1], width), min(y + sprite.shape[0], height)
    if x0 < x1 and y0 < y1:
        target[y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]


def paste_centered(target: np.ndarray, sprite: np.ndarray, cx: float, cy: float) -> None:
    paste(target, sprite, round(cx - sprite.shape[1] / 2), round(cy - sprite.shape[0] / 2))


def write(
    target: np.ndarray, text: str, cx: float, cy: float, size: int, color: Color, background: Color
) -> None:
    """Draw ``text`` centred at (cx, cy); ``background`` must match the canvas there."""
    paste_centered(target, text_sprite(text, size, color, background), cx, cy)


def clear_caches() -> None:
    """Forget every cached font and sprite (the uncached baseline of ``rlvlm bench envs``)."""
    for cache in _caches:
        cache.cache_clear()
