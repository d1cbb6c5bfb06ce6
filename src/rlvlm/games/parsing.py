"""Lenient parsing of a model's JSON-ish reply into an action index.

Models are asked for JSON such as ``{"thoughts": "...", "action": "+"}`` but write single
quotes, unquoted keys, missing braces, code fences, trailing text and odd case. Rather than
repairing the JSON, we look for ``key:`` in key position and read the value after it. Every
regex here is linear (no nested ambiguous quantifiers) and every value is bounded, so any
string, however hostile, parses in linear time without raising.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ParsedAction",
    "find_keys",
    "find_values",
    "first_value",
    "parse_action",
    "parse_choice",
]

MAX_VALUE_CHARS = 200
"""Values are cut to this length: actions and CoT fields are short, and the cap keeps the
scan of each value O(1), so a reply full of unterminated strings stays linear."""

# Matches from the opening quote on, stopping at the matching unescaped quote (or where the
# caller's endpos cuts it). The two alternatives never start with the same character, so the
# repetition cannot backtrack.
_QUOTED = {q: re.compile(rf"(?:[^{q}\\]|\\.)*", re.DOTALL) for q in "\"'"}
_LIST = re.compile(r"\[[^\]]*\]?")  # flat lists only: card lists are never nested
_BARE = re.compile(r"[^,}\n]*")
_SPACE = re.compile(r"\s*")
_TOKEN = re.compile(r"[0-9]+|[a-z]+|[^\sa-z0-9]")  # whole numbers, so "10" is never "1"
_STRIP = " \t\r\n\"'`"


@dataclass(frozen=True)
class ParsedAction:
    """The outcome of parsing one reply: an action index, or None and why not.

    >>> ParsedAction(1, "ok").valid
    True
    >>> ParsedAction(None, "no action key").valid
    False
    """

    action: int | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.action is not None


@lru_cache(maxsize=64)
def _key_pattern(key: str) -> re.Pattern[str]:
    # Key position: after the start, "{", "," or a newline, ignoring other whitespace. The
    # whitespace run excludes "\n" so it never overlaps the newline prefix (which would make
    # a long run of newlines quadratic).
    return re.compile(
        rf"(?:\A|[{{,\n])[^\S\n]*(?P<key>[\"']?{re.escape(key)}[\"']?)\s*[:=]", re.IGNORECASE
    )


def find_keys(reply: str, key: str) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of ``key`` used as a key: start at its opening quote (or first
    letter), end just after the ``:`` or ``=``.

    >>> reply = '{"thoughts": "the best action: +", "Action": "+"}'
    >>> find_keys(reply, "action")
    [(35, 44)]
    >>> reply[35:44]
    '"Action":'
    >>> find_keys("{'actions': '+', reaction = '-'}", "action")
    []
    """
    return [(m.start("key"), m.end()) for m in _key_pattern(key).finditer(reply)]


def _value_at(reply: str, pos: int) -> str:
    pos = _SPACE.match(reply, pos).end()
    limit = min(len(reply), pos + MAX_VALUE_CHARS)
    first = reply[pos : pos + 1]
    if first in _QUOTED:
        # An unterminated string (a truncated reply) runs to the cap or the end of the text.
        return _QUOTED[first].match(reply, pos + 1, limit + 1).group().strip()
    if first == "[":
        return _LIST.match(reply, pos, limit).group().strip()
    return _BARE.match(reply, pos, limit).group().strip()


def find_values(reply: str, key: str) -> list[str]:
    """The raw value after each key found by :func:`find_keys`: a quoted string's content, a
    list's text with its brackets, or bare text up to the next ``,``, ``}`` or newline.

    >>> find_values('{"current number": 3, "cards": [2, 10], "action": "+"}', "current number")
    ['3']
    >>> find_values('{"current number": 3, "cards": [2, 10], "action": "+"}', "cards")
    ['[2, 10]']
    >>> find_values("{'action': 'hit'} then action = stand", "action")
    ['hit']
    >>> find_values('{"action": "hi', "action")
    ['hi']
    """
    return [_value_at(reply, end) for _, end in find_keys(reply, key)]


def first_value(reply: str, key: str) -> str | None:
    """The first value of ``key`` in lower case, without quotes or a final full stop and
    with its spaces collapsed; None if the reply has no such key.

    >>> first_value('{"Current Formula": " 3 +  4 ", "cards": [3, 4]}', "current formula")
    '3 + 4'
    >>> first_value('{"cards": [3, 4]}', "thoughts") is None
    True
    """
    values = find_values(reply, key)
    return _normalise(values[0]) if values else None


def _normalise(value: str) -> str:
    value = " ".join(value.lower().split()).strip(_STRIP)
    return value.rstrip(".!").strip(_STRIP) or value


def _parse_value(value: str, names: Mapping[str, int]) -> ParsedAction:
    value = _normalise(value)
    if not value:
        return ParsedAction(None, "empty action")
    if value in names:
        return ParsedAction(names[value], "ok")
    found: dict[int, str] = {}  # action index -> first token naming it
    for token in _TOKEN.findall(value):
        if token in names:
            found.setdefault(names[token], token)
    if len(found) == 1:
        return ParsedAction(next(iter(found)), "ok")
    if found:
        return ParsedAction(None, "several actions: " + ", ".join(map(repr, found.values())))
    return ParsedAction(None, f"unknown action {value[:40]!r}")


def parse_action(reply: str, names: Mapping[str, int]) -> ParsedAction:
    """Read the ``action`` value(s) of ``reply`` as an index via ``names``, which maps
    lower-case action words and symbols (aliases included) to action indices.

    >>> names = {"stand": 0, "stick": 0, "hit": 1}
    >>> parse_action('```json\\n{"thoughts": "15 vs 10", "Action": "HIT."}\\n```', names)
    ParsedAction(action=1, reason='ok')
    >>> parse_action("{'action': 'hit or stand'}", names)
    ParsedAction(action=None, reason="several actions: 'hit', 'stand'")
    >>> parse_action('{"thoughts": "the best action: hit"}', names)
    ParsedAction(action=None, reason='no action key')
    >>> parse_action('{"action": 10}', {"1": 0, "10": 9})
    ParsedAction(action=9, reason='ok')
    """
    return _one_action([_parse_value(value, names) for value in find_values(reply, "action")])


def _one_action(parsed: list[ParsedAction]) -> ParsedAction:
    """What the action keys of one reply say together: keys that agree are one action."""
    if not parsed:
        return ParsedAction(None, "no action key")
    actions = {p.action for p in parsed if p.valid}
    if len(actions) == 1:
        return ParsedAction(actions.pop(), "ok")
    if actions:
        return ParsedAction(None, "conflicting action keys")
    return parsed[0]


def _phrase_in(phrase: str, text: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words ("cabinet 1" is not in "cabinet 10")."""
    start = text.find(phrase)
    while start != -1:
        end = start + len(phrase)
        if (start == 0 or not text[start - 1].isalnum()) and (
            end == len(text) or not text[end].isalnum()
        ):
            return True
        start = text.find(phrase, start + 1)
    return False


def _choose(value: str, choices: Sequence[str], canonical: Callable[[str], str]) -> ParsedAction:
    value = _normalise(value)
    if not value:
        return ParsedAction(None, "empty action")
    exact = {_normalise(choice): index for index, choice in enumerate(choices)}
    if value in exact:
        return ParsedAction(exact[value], "ok")
    forms = {canonical(_normalise(choice)): index for index, choice in enumerate(choices)}
    value = canonical(value)
    if value in forms:
        return ParsedAction(forms[value], "ok")
    named = [form for form in forms if _phrase_in(form, value)]
    # A choice inside a longer named one ("look" in "look at apple 1") is not named itself.
    named = [form for form in named if not any(form != o and _phrase_in(form, o) for o in named)]
    if len(named) == 1:
        return ParsedAction(forms[named[0]], "ok")
    if named:
        return ParsedAction(None, "several actions: " + ", ".join(map(repr, named[:3])))
    return ParsedAction(None, f"not an admissible action {value[:40]!r}")


def parse_choice(
    reply: str, choices: Sequence[str], canonical: Callable[[str], str] = lambda text: text
) -> ParsedAction:
    """Read the ``action`` value(s) of ``reply`` as one of ``choices``, the actions of the
    moment (ALFWorld's admissible commands), by index.

    A value matches a choice exactly (any case, spacing, quotes or final full stop), then in
    the ``canonical`` form of both (a game's own spelling rules), then by naming exactly one
    choice as whole words within longer text.

    >>> choices = ["go to cabinet 1", "go to cabinet 10", "look"]
    >>> parse_choice('{"thoughts": "...", "action": "Go to Cabinet 10."}', choices)
    ParsedAction(action=1, reason='ok')
    >>> parse_choice('{"action": "I will go to cabinet 1 now"}', choices)
    ParsedAction(action=0, reason='ok')
    >>> parse_choice('{"action": "go to cabinet 2"}', choices).reason
    "not an admissible action 'go to cabinet 2'"
    """
    return _one_action(
        [_choose(value, choices, canonical) for value in find_values(reply, "action")]
    )
