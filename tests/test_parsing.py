"""Tests for rlvlm.games.parsing: realistic and hostile model replies."""

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlvlm.games.parsing import ParsedAction, find_keys, find_values, parse_action

NUMBERLINE = {"-": 0, "+": 1}
BLACKJACK = {"stand": 0, "stick": 0, "hit": 1}
POINTS24 = {
    **{str(n): n - 1 for n in range(1, 11)},
    **{symbol: 10 + i for i, symbol in enumerate("+-*/()=")},
}
NAME_MAPS = {"numberline": NUMBERLINE, "blackjack": BLACKJACK, "points24": POINTS24}

# reply, expected action for (numberline, blackjack, points24); None = invalid.
CASES = [
    # clean JSON, as the prompts ask for
    (
        '{"current number": 3, "target number": 5, "thoughts": "3 is below 5, so add one",'
        ' "action": "+"}',
        (1, None, 10),
    ),
    (
        '{"cards": [2, 10], "current formula": "2", "thoughts": "add ten", "action": "10"}',
        (None, None, 9),
    ),
    ('{"thoughts": "I have 15, the dealer shows 10.", "action": "hit"}', (None, 1, None)),
    ('{"thoughts": "hit would bust", "action": "stand"}', (None, 0, None)),
    ('{"action": "*"}', (None, None, 12)),
    ('{"action": "/"}', (None, None, 13)),
    ('{"action": "("}', (None, None, 14)),
    ('{"action": ")"}', (None, None, 15)),
    ('{"action": "="}', (None, None, 16)),
    # quoting and layout variants
    ("{'thoughts': 'the dealer is weak', 'action': 'stick'}", (None, 0, None)),
    ("{thoughts: 7 is above 4, action: -}", (0, None, 11)),
    ('"thoughts": "too high", "action": "-"', (0, None, 11)),
    ("thoughts: 3 < 5\naction: +", (1, None, 10)),
    ('```json\n{"thoughts": "stay", "action": "stand"}\n```', (None, 0, None)),
    ('{"thoughts": "go up", "action": "+"} I hope this helps!', (1, None, 10)),
    ('{"Thoughts": "17 is enough", "Action": "STAND"}', (None, 0, None)),
    ('{"ACTION": "HIT"}', (None, 1, None)),
    ('{"action": "-", "thoughts": "5 is above 2"}', (0, None, 11)),
    ('{{{{"action": "+"}}}}', (1, None, 10)),
    ('{"thoughts": "数字太小", "action": "+"}', (1, None, 10)),
    ('{"action" = "hit"}', (None, 1, None)),
    ("action = +", (1, None, 10)),
    # numbers: whole tokens only, so 1 and 10 never mix
    ('{"action": 10}', (None, None, 9)),
    ('{"action": 1}', (None, None, 0)),
    ('{"action": "1 0"}', (None, None, 0)),  # "0" is no card, so only "1" names an action
    ('{"action": "+1"}', (1, None, None)),  # points24: "+" and "1" are both actions
    ('{"action": "-5"}', (0, None, None)),
    ('{"action": 3 + 4}', (1, None, None)),
    # decorated values
    ('{"action": "hit."}', (None, 1, None)),
    ('{"action": "Stand!"}', (None, 0, None)),
    ('{"action": "I choose +"}', (1, None, 10)),
    ('{"action": "`+`"}', (1, None, 10)),
    ('{"action": ["+"]}', (1, None, 10)),
    ('{"action": "stand or stick"}', (None, 0, None)),  # aliases of one action
    ('{"action": "+\x00"}', (1, None, 10)),
    # invalid replies
    ('{"action": "hit or stand"}', (None, None, None)),
    ('{"action": "+ or -"}', (None, None, None)),
    ('{"action": "jump"}', (None, None, None)),
    ('{"action": ""}', (None, None, None)),
    ("{'action': }", (None, None, None)),
    ('{"thoughts": "I should hit"}', (None, None, None)),
    ('{"thoughts": "the best action: +"}', (None, None, None)),
    ('{"thoughts": "x", "actions": "+"}', (None, None, None)),
    ('{"reaction": "+"}', (None, None, None)),
    ('{"thoughts": "15 vs 10", "action": "hi', (None, None, None)),
    ("", (None, None, None)),
    # several action keys
    ('{"action": "hit", "thoughts": "yes", "Action": "HIT"}', (None, 1, None)),
    ('{"action": "stand"}\n{"action": "stick"}', (None, 0, None)),
    ('{"action": "+", "action": ""}', (1, None, 10)),
    ('{"action": "+", "action": "-"}', (None, None, None)),
    ('{"action": "hit"} {"action": "stand"}', (None, None, None)),
]


@pytest.mark.parametrize(("reply", "expected"), CASES)
@pytest.mark.parametrize("game", range(3), ids=list(NAME_MAPS))
def test_parse_action_table(reply: str, expected: tuple, game: int) -> None:
    names = list(NAME_MAPS.values())[game]
    names_before = dict(names)
    parsed = parse_action(reply, names)
    assert parsed.action == expected[game], parsed.reason
    assert parsed.valid == (parsed.reason == "ok") == (expected[game] is not None)
    assert names == names_before


@pytest.mark.parametrize(
    ("reply", "names", "reason"),
    [
        ('{"thoughts": "the best action: +"}', NUMBERLINE, "no action key"),
        ('{"action": "jump"}', BLACKJACK, "unknown action 'jump'"),
        ('{"action": "+ or -"}', NUMBERLINE, "several actions: '+', '-'"),
        ('{"action": "+1"}', POINTS24, "several actions: '+', '1'"),
        ('{"action": "hit", "action": "stand"}', BLACKJACK, "conflicting action keys"),
        ('{"action": ""}', NUMBERLINE, "empty action"),
        ('{"action": "jump", "action": "+ or -"}', NUMBERLINE, "unknown action 'jump'"),
    ],
)
def test_invalid_reasons(reply: str, names: dict, reason: str) -> None:
    assert parse_action(reply, names) == ParsedAction(None, reason)


def test_find_keys_spans() -> None:
    reply = '{"thoughts": "the best action: +",\n  \'Action\' : "+", action= -}'
    spans = find_keys(reply, "action")
    assert [reply[start] for start, _ in spans] == ["'", "a"]
    assert [reply[start:end] for start, end in spans] == ["'Action' :", "action="]
    assert reply[: spans[0][0]].endswith("\n  ")  # thoughts stay before the first key


@pytest.mark.parametrize(
    "reply",
    [
        '{"thoughts": "the best action: +"}',
        '{"actions": "+", "reaction": "-", "action_type": "hit"}',
        "my action is: hit",
        "",
    ],
)
def test_find_keys_none(reply: str) -> None:
    assert find_keys(reply, "action") == []


def test_find_values_cot_fields() -> None:
    reply = (
        '{"current number": 3, "target number": "5", "cards": [2, 10],'
        " 'thoughts': 'it\\'s low', \"action\": \"+\"}"
    )
    assert find_values(reply, "current number") == ["3"]
    assert find_values(reply, "target number") == ["5"]
    assert find_values(reply, "cards") == ["[2, 10]"]
    assert find_values(reply, "thoughts") == ["it\\'s low"]
    assert find_values(reply, "missing") == []


def test_find_values_capped() -> None:
    (value,) = find_values('{"thoughts": "' + "x" * 1000 + '"}', "thoughts")
    assert value == "x" * 200


# --- property tests ---------------------------------------------------------------

FRAGMENTS = ['"action":', "action=", "'Action' :", "{", "}", ",", "\n", '"', "'", "\\", "["]
NAME_MAP = st.sampled_from(list(NAME_MAPS.values()))


@settings(deadline=200)
@given(reply=st.text(), names=NAME_MAP)
def test_never_raises_on_text(reply: str, names: dict) -> None:
    parsed = parse_action(reply, names)
    assert isinstance(parsed, ParsedAction)
    assert parsed.action is None or parsed.action in names.values()


@settings(deadline=200)
@given(
    parts=st.lists(
        st.one_of(st.sampled_from(FRAGMENTS + list(POINTS24) + list(BLACKJACK)), st.text()),
        max_size=30,
    ),
    names=NAME_MAP,
)
def test_never_raises_around_action_fragments(parts: list[str], names: dict) -> None:
    reply = "".join(parts)
    parsed = parse_action(reply, names)
    assert parsed.action is None or parsed.action in names.values()
    assert parsed.valid == (parsed.reason == "ok")
    for start, end in find_keys(reply, "action"):
        assert reply[start:end].strip("\"' :=").lower() == "action"


# Thoughts without quotes, backslashes or key-position characters cannot hide an action key.
THOUGHTS = st.text(st.characters(blacklist_characters='"\\{,\n', blacklist_categories=["Cs"]))


@settings(deadline=200)
@given(data=st.data(), thoughts=THOUGHTS, upper=st.booleans())
def test_clean_json_round_trips(data: st.DataObject, thoughts: str, upper: bool) -> None:
    names = data.draw(NAME_MAP)
    name = data.draw(st.sampled_from(sorted(names)))
    key = "ACTION" if upper else "action"
    reply = f'{{"thoughts": "{thoughts}", "{key}": "{name}"}}'
    assert parse_action(reply, names) == ParsedAction(names[name], "ok")


# --- large inputs: a quadratic regex would take minutes here ----------------------


def test_one_megabyte_of_garbage() -> None:
    garbage = "".join(random.Random(0).choices(string.printable, k=1_000_000))
    assert parse_action(garbage, POINTS24) == ParsedAction(None, "no action key")


@pytest.mark.parametrize(
    "reply",
    [
        '{"action": "' * 83_334,
        ",action:" * 125_000,
        "{action" + " " * 1_000_000,
        "\n" * 1_000_000,
        '"action": "' + "\\" * 1_000_000,
    ],
    ids=["open-strings", "bare-keys", "spaces", "newlines", "backslashes"],
)
def test_one_megabyte_of_hostile_structure(reply: str) -> None:
    parsed = parse_action(reply, NUMBERLINE)
    assert not parsed.valid
