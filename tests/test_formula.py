"""Tests for the exact formula evaluator and solver of the card games."""

from __future__ import annotations

import itertools
import operator
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlvlm.games.formula import Token, complete, evaluate, format_formula, solutions, solve

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def tokens_of(text: str) -> list[Token]:
    """Split a space-separated formula into tokens, e.g. ``"8 / ( 3 - 2 )"``."""
    return [int(part) if part.isdigit() else part for part in text.split()]


# ----------------------------------------------------------------------------- evaluate

EVALUATE_CASES = [
    ("7", Fraction(7)),
    ("2 + 3 * 4", Fraction(14)),
    ("( 2 + 3 ) * 4", Fraction(20)),
    ("8 / 4 / 2", Fraction(1)),
    ("10 - 3 - 2", Fraction(5)),
    ("10 - ( 3 - 2 )", Fraction(9)),
    ("1 / 3", Fraction(1, 3)),
    ("8 / ( 3 - 8 / 3 )", Fraction(24)),
    ("( 5 - 1 / 5 ) * 5", Fraction(24)),
    ("0 * 5", Fraction(0)),
    ("( ( ( 6 ) ) )", Fraction(6)),
    ("1 / 0", None),
    ("5 / ( 3 - 3 )", None),
    ("10 * * 10 * * 10", None),
    ("2 4 * 1 * 1", None),
    ("", None),
    ("( )", None),
    ("( 2 + 3", None),
    ("2 + 3 )", None),
    (") 2 (", None),
    ("2 + 3 +", None),
    ("( 2 + ) 3", None),
    ("+ 2", None),
    ("- 2 + 30", None),
    ("2 ( 3 )", None),
    ("( 2 ) 3", None),
]


@pytest.mark.parametrize(
    ("text", "expected"), EVALUATE_CASES, ids=[c[0] or "empty" for c in EVALUATE_CASES]
)
def test_evaluate_table(text: str, expected: Fraction | None) -> None:
    result = evaluate(tokens_of(text))
    assert result == expected
    if expected is not None:
        assert type(result) is Fraction  # exact, never a float


@pytest.mark.parametrize(
    "tokens",
    [
        [None],
        [1.5],
        [2.0, "+", 2],
        [True, "+", 1],
        [1, "*", False],
        ["x"],
        [3, "**", 2],
        [3, "^", 2],
        ["2"],
        [-3, "+", 4],
        [[1]],
        [2, "+", object()],
    ],
)
def test_evaluate_rejects_junk(tokens: list[object]) -> None:
    assert evaluate(tokens) is None


def test_evaluate_huge_ints_are_exact() -> None:
    assert evaluate([10**50, "*", 10**50, "+", 1]) == 10**100 + 1


def test_evaluate_stops_at_the_first_invalid_token() -> None:
    def stream() -> Iterator[object]:
        yield from [10, "*", "*"]
        raise AssertionError("evaluate kept reading past an invalid token")

    assert evaluate(stream()) is None


def test_evaluate_deep_nesting_is_iterative() -> None:
    depth = 100_000
    tokens = ["("] * depth + [5, "*", "(", 2, ")"] + [")"] * depth
    assert evaluate(tokens) == 10
    assert evaluate(["("] * depth + [5] + [")"] * (depth - 1)) is None


class Hostile:
    """An object whose comparisons and hash all raise."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("no")

    def __hash__(self) -> int:
        raise RuntimeError("no")


class HostileInt(int):
    def __lt__(self, other: object) -> bool:
        raise RuntimeError("no")

    def __hash__(self) -> int:
        raise RuntimeError("no")


VALID_TOKENS = st.one_of(st.sampled_from(["+", "-", "*", "/", "(", ")"]), st.integers(0, 10))
ANY_TOKENS = st.one_of(
    VALID_TOKENS,
    st.integers(min_value=-(10**300), max_value=10**300),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.builds(Hostile),
    st.integers(0, 10).map(HostileInt),
)


@settings(deadline=200, max_examples=300)
@given(st.lists(ANY_TOKENS, max_size=60))
def test_evaluate_never_raises(tokens: list[object]) -> None:
    result = evaluate(tokens)
    assert result is None or type(result) is Fraction


@settings(deadline=200, max_examples=300)
@given(st.lists(VALID_TOKENS, max_size=60))
def test_evaluate_valid_tokens_give_fraction_or_none(tokens: list[Token]) -> None:
    result = evaluate(tokens)
    assert result is None or type(result) is Fraction
    # A formula that evaluates stays valid inside parentheses, with the same value.
    assert evaluate(["(", *tokens, ")"]) == result


Valued = tuple[list[Token], Fraction | None]  # fully parenthesised tokens and their value


def _join(parts: tuple[Valued, str, Valued]) -> Valued:
    (left_tokens, left), op, (right_tokens, right) = parts
    if left is None or right is None or (op == "/" and right == 0):
        value = None
    else:
        value = OPS[op](left, right)
    return ["(", *left_tokens, op, *right_tokens, ")"], value


TREES = st.recursive(
    st.integers(0, 10).map(lambda n: ([n], Fraction(n))),
    lambda sub: st.tuples(sub, st.sampled_from("+-*/"), sub).map(_join),
    max_leaves=15,
)


@settings(deadline=200)
@given(TREES)
def test_evaluate_matches_tree_value(tree: Valued) -> None:
    tokens, value = tree
    assert evaluate(tokens) == value


# ----------------------------------------------------------------------- format_formula


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        ([], ""),
        ([7], "7"),
        ([2, "*", 6], "2 * 6"),
        ((8, "/", "(", 3, "-", 8, "/", 3, ")"), "8 / ( 3 - 8 / 3 )"),
        ([10, "+", 2], "10 + 2"),
    ],
)
def test_format_formula(tokens: Sequence[Token], text: str) -> None:
    assert format_formula(tokens) == text
    assert tokens_of(text) == list(tokens)


# ------------------------------------------------------------------------------- solver


PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
Tree = tuple[list[Token], tuple[Token, ...], int, bool]


def trees(values: Sequence[int], operators: str) -> Iterator[Tree]:
    """Every binary tree over ``values`` in this order, as (fully parenthesised tokens, tokens
    with minimal parentheses, precedence of the top operator, whether it needs parentheses)."""
    if len(values) == 1:
        yield [values[0]], (values[0],), 3, False
        return
    for cut in range(1, len(values)):
        for left_full, left, left_prec, left_needs in trees(values[:cut], operators):
            for right_full, right, right_prec, right_needs in trees(values[cut:], operators):
                for op in operators:
                    prec = PRECEDENCE[op]
                    wrap_left = left_prec < prec
                    wrap_right = right_prec < prec or (right_prec == prec and op in "-/")
                    minimal = (
                        *(("(", *left, ")") if wrap_left else left),
                        op,
                        *(("(", *right, ")") if wrap_right else right),
                    )
                    needs = left_needs or right_needs or wrap_left or wrap_right
                    yield ["(", *left_full, op, *right_full, ")"], minimal, prec, needs


def brute_force_solvable(values: Sequence[int], target: int, operators: str) -> bool:
    return any(
        evaluate(tree[0]) == target
        for order in set(itertools.permutations(values))
        for tree in trees(order, operators)
    )


def brute_force_solutions(
    values: Sequence[int], target: int, operators: str, parens: bool
) -> set[tuple[Token, ...]]:
    return {
        minimal
        for order in set(itertools.permutations(values))
        for full, minimal, _, needs in trees(order, operators)
        if (parens or not needs) and evaluate(full) == target
    }


def parentheses_are_minimal(tokens: Sequence[Token]) -> bool:
    """True iff every parenthesised group would change the parse if removed."""
    open_groups: list[tuple[int, set[str]]] = []  # (index of "(", operators at its top level)
    for i, tok in enumerate(tokens):
        if tok == "(":
            open_groups.append((i, set()))
        elif tok == ")":
            start, inner = open_groups.pop()
            before = tokens[start - 1] if start > 0 else None
            after = tokens[i + 1] if i + 1 < len(tokens) else None
            if inner & {"+", "-"}:
                needed = before in ("*", "/", "-") or after in ("*", "/")
            else:
                needed = bool(inner) and before == "/"
            if not needed:
                return False
        elif isinstance(tok, str) and open_groups:
            open_groups[-1][1].add(tok)
    return True


def check_solutions(values: Sequence[int], target: int, operators: str, parens: bool) -> None:
    found = solutions(values, target, operators, parens)
    assert len(set(found)) == len(found), "duplicate formulas"
    assert list(found) == sorted(found, key=lambda t: (len(t), format_formula(t)))
    for tokens in found:
        assert evaluate(tokens) == target, format_formula(tokens)
        numbers = [tok for tok in tokens if isinstance(tok, int)]
        assert Counter(numbers) == Counter(values), format_formula(tokens)
        assert {tok for tok in tokens if isinstance(tok, str)} <= set(operators) | {"(", ")"}
        assert parentheses_are_minimal(tokens), format_formula(tokens)
        if not parens:
            assert "(" not in tokens and ")" not in tokens


def test_points24_matches_brute_force_on_random_deals() -> None:
    rng = random.Random(1234)
    solvable = 0
    for _ in range(200):
        values = [rng.randint(1, 10) for _ in range(4)]
        expected = brute_force_solvable(values, 24, "+-*/")
        assert (solve(values, 24, "+-*/", parens=True) is not None) == expected, values
        check_solutions(values, 24, "+-*/", parens=True)
        solvable += expected
    assert 100 < solvable < 200  # the sample mixes solvable and unsolvable deals


def test_ezpoints_matches_brute_force_on_all_pairs() -> None:
    for a, b in itertools.product(range(1, 11), repeat=2):
        expected = brute_force_solvable([a, b], 12, "+*")
        assert (solve([a, b], 12, "+*", parens=False) is not None) == expected, (a, b)
        assert set(solutions([a, b], 12, "+*", False)) == brute_force_solutions(
            [a, b], 12, "+*", False
        )
        check_solutions([a, b], 12, "+*", parens=False)


@pytest.mark.parametrize("parens", [True, False])
def test_solutions_are_exactly_the_brute_force_set(parens: bool) -> None:
    rng = random.Random(99)
    deals = [[rng.randint(1, 10) for _ in range(rng.choice([3, 4]))] for _ in range(20)]
    for values in [[3, 3, 8, 8], [1, 5, 5, 5], [2, 2, 2, 2], *deals]:
        expected = brute_force_solutions(values, 24, "+-*/", parens)
        assert set(solutions(values, 24, "+-*/", parens)) == expected, values


def test_parens_false_drops_formulas_that_need_them() -> None:
    # 4 * ( 1 + 2 ) is the only way to 12 with these cards and "+*".
    assert solutions([1, 2, 4], 12, "+*", parens=True) != ()
    assert solutions([1, 2, 4], 12, "+*", parens=False) == ()
    check_solutions([1, 2, 4], 12, "+*", parens=True)
    check_solutions([1, 2, 3, 4], 24, "+-*/", parens=False)


@pytest.mark.parametrize(
    ("values", "target", "operators", "parens", "expected"),
    [
        ((3, 3, 8, 8), 24, "+-*/", True, ["8 / ( 3 - 8 / 3 )"]),
        ((1, 1, 1, 1), 24, "+-*/", True, []),
        ((2, 6), 12, "+*", False, ["2 * 6", "6 * 2"]),
        ((6, 6), 12, "+*", False, ["6 + 6"]),
        ((5, 5, 5, 1), 24, "+-*/", True, ["( 5 - 1 / 5 ) * 5", "5 * ( 5 - 1 / 5 )"]),
        (
            (1, 2, 3),
            6,
            "+",
            True,
            ["1 + 2 + 3", "1 + 3 + 2", "2 + 1 + 3", "2 + 3 + 1", "3 + 1 + 2", "3 + 2 + 1"],
        ),
        ((7,), 7, "+", False, ["7"]),
        ((), 0, "+", False, []),
    ],
)
def test_known_solutions(
    values: tuple[int, ...], target: int, operators: str, parens: bool, expected: list[str]
) -> None:
    found = solutions(values, target, operators, parens)
    assert [format_formula(tokens) for tokens in found] == expected
    assert solve(values, target, operators, parens) == (found[0] if found else None)


def test_3388_is_solvable_only_through_a_fraction() -> None:
    (only,) = solutions([3, 3, 8, 8], 24, "+-*/", parens=True)
    assert evaluate(only[3:8]) == Fraction(1, 3)  # 3 - 8 / 3
    assert solutions([3, 3, 8, 8], 24, "+-*/", parens=False) == ()


def test_solutions_are_cached_and_ignore_card_order() -> None:
    first = solutions([8, 3, 8, 3], 24, "+-*/", True)
    assert solutions((3, 3, 8, 8), 24, "/*-+", True) is first


@pytest.mark.parametrize(
    ("values", "operators"), [([1, -2], "+"), ([1, 2], "+^"), ([1, 2], "+ "), ([1.5, 2], "+")]
)
def test_solutions_rejects_bad_arguments(values: list[int], operators: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        solutions(values, 3, operators, True)


# ----------------------------------------------------------------------------- complete


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ([], "8 / ( 3 - 8 / 3 )"),
        ([8], "8 / ( 3 - 8 / 3 )"),
        ([8, "/", "(", 3, "-"], "8 / ( 3 - 8 / 3 )"),
        ([8, "/", "(", 3, "-", 8, "/", 3, ")"], "8 / ( 3 - 8 / 3 )"),
        ([3], None),
        ([8, "*"], None),
        ([8, "/", "(", 3, "-", 8, "/", 3, ")", "+"], None),
    ],
)
def test_complete_3388(prefix: list[Token], expected: str | None) -> None:
    result = complete([3, 3, 8, 8], 24, "+-*/", True, prefix)
    assert (None if result is None else format_formula(result)) == expected


def test_complete_picks_the_first_matching_solution() -> None:
    found = solutions([2, 6], 12, "+*", False)
    assert complete([2, 6], 12, "+*", False, []) == found[0] == (2, "*", 6)
    assert complete([2, 6], 12, "+*", False, [6]) == (6, "*", 2)
    assert complete([2, 6], 12, "+*", False, [2, "+"]) is None
    assert complete([1, 1], 12, "+*", False, []) is None
