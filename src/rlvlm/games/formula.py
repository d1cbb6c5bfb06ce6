"""Exact arithmetic for the card-formula games: evaluate token formulas and enumerate solutions.

Values are :class:`fractions.Fraction`, so ``8 / ( 3 - 8 / 3 )`` is exactly 24, and the grammar
has no exponent, unary minus or number concatenation.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import product
from typing import NamedTuple, TypeAlias

Token: TypeAlias = int | str

OPERATORS = "+-*/"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_ATOM = 3  # precedence of a number or a parenthesised group: never needs wrapping


def _apply(values: list[Fraction], op: str) -> bool:
    """Replace the top two values by ``left op right``; False on division by zero."""
    right = values.pop()
    left = values.pop()
    if op == "+":
        values.append(left + right)
    elif op == "-":
        values.append(left - right)
    elif op == "*":
        values.append(left * right)
    elif right == 0:
        return False
    else:
        values.append(left / right)
    return True


def evaluate(tokens: Iterable[object]) -> Fraction | None:
    """Return the exact value of a token formula, or None if it is malformed or divides by zero.

    Numbers are non-negative Python ints; operators and parentheses are one-char strings.
    Reading stops at the first token that makes the formula invalid.

    >>> evaluate([2, "+", 3, "*", 4])
    Fraction(14, 1)
    >>> evaluate([8, "/", "(", 3, "-", 8, "/", 3, ")"])
    Fraction(24, 1)
    >>> evaluate([2, 4]) is None, evaluate([10, "*", "*", 10]) is None, evaluate([1, "/", 0])
    (True, True, None)
    """
    values: list[Fraction] = []
    pending: list[str] = []  # operators and "(" not yet applied
    expect_operand = True
    for tok in tokens:
        # Exact type checks: bools, int subclasses and str subclasses could override
        # comparison or hashing and raise, and True must not count as the number 1.
        if type(tok) is int:
            if not expect_operand or tok < 0:
                return None
            values.append(Fraction(tok))
            expect_operand = False
        elif type(tok) is not str:
            return None
        elif tok == "(":
            if not expect_operand:
                return None
            pending.append(tok)
        elif tok == ")":
            if expect_operand:  # "( )" or an operator right before ")"
                return None
            while pending and pending[-1] != "(":
                if not _apply(values, pending.pop()):
                    return None
            if not pending:
                return None
            pending.pop()
        elif tok in _PRECEDENCE:
            if expect_operand:  # leading operator, unary minus, or "* *"
                return None
            while pending and pending[-1] != "(" and _PRECEDENCE[pending[-1]] >= _PRECEDENCE[tok]:
                if not _apply(values, pending.pop()):
                    return None
            pending.append(tok)
            expect_operand = True
        else:
            return None
    if expect_operand:
        return None
    while pending:
        op = pending.pop()
        if op == "(" or not _apply(values, op):
            return None
    return values[0]


def format_formula(tokens: Iterable[Token]) -> str:
    """Join tokens with single spaces.

    >>> format_formula([8, "/", "(", 3, "-", 8, "/", 3, ")"])
    '8 / ( 3 - 8 / 3 )'
    >>> format_formula([])
    ''
    """
    return " ".join(str(tok) for tok in tokens)


class _Expr(NamedTuple):
    value: Fraction
    tokens: tuple[Token, ...]
    precedence: int  # of the top-level operator, or _ATOM


def _splits(values: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Yield each ordered split of a sorted multiset into two non-empty sorted sub-multisets."""
    counts = sorted(Counter(values).items())
    for taken in product(*(range(count + 1) for _, count in counts)):
        left = tuple(v for (v, _), k in zip(counts, taken, strict=True) for _ in range(k))
        right = tuple(
            v for (v, count), k in zip(counts, taken, strict=True) for _ in range(count - k)
        )
        if left and right:
            yield left, right


def _combine(
    lefts: Sequence[_Expr],
    rights: Sequence[_Expr],
    operators: str,
    parens: bool,
    target: int | None = None,
) -> Iterator[_Expr]:
    """Yield ``left op right`` for every pair, with minimal parentheses, in canonical form."""
    for op in operators:
        prec = _PRECEDENCE[op]
        for left in lefts:
            wrap_left = left.precedence < prec
            if wrap_left and not parens:
                continue
            for right in rights:
                if right.precedence == prec and op in "+*":
                    # a + (b - c) is written a + b - c, which is the tree (a + b) - c:
                    # only the left-associative tree is kept, so each formula appears once.
                    continue
                wrap_right = right.precedence <= prec
                if wrap_right and not parens:
                    continue
                if op == "/" and right.value == 0:
                    continue
                value = _OPS[op](left.value, right.value)
                if target is not None and value != target:
                    continue  # skip building tokens for formulas nobody will keep
                ltoks = ("(", *left.tokens, ")") if wrap_left else left.tokens
                rtoks = ("(", *right.tokens, ")") if wrap_right else right.tokens
                yield _Expr(value, (*ltoks, op, *rtoks), prec)


@lru_cache(maxsize=4096)
def _expressions(values: tuple[int, ...], operators: str, parens: bool) -> tuple[_Expr, ...]:
    """All canonical formulas over a sorted multiset (memoised: sub-deals recur across deals)."""
    if len(values) == 1:
        return (_Expr(Fraction(values[0]), values, _ATOM),)
    return tuple(
        expr
        for left, right in _splits(values)
        for expr in _combine(
            _expressions(left, operators, parens),
            _expressions(right, operators, parens),
            operators,
            parens,
        )
    )


@lru_cache(maxsize=4096)
def _solutions(
    values: tuple[int, ...], target: int, operators: str, parens: bool
) -> tuple[tuple[Token, ...], ...]:
    if not values:
        return ()
    if len(values) == 1:
        found = [(values[0],)] if values[0] == target else []
    else:
        # The full deal is not memoised through _expressions: its thousands of formulas
        # would be kept per deal, while only those hitting the target are needed.
        found = [
            expr.tokens
            for left, right in _splits(values)
            for expr in _combine(
                _expressions(left, operators, parens),
                _expressions(right, operators, parens),
                operators,
                parens,
                target,
            )
        ]
    return tuple(sorted(found, key=lambda toks: (len(toks), format_formula(toks))))


def solutions(
    values: Sequence[int], target: int, operators: str, parens: bool
) -> tuple[tuple[Token, ...], ...]:
    """Every distinct formula using each value once that evaluates exactly to ``target``.

    Operators come from ``operators`` (a subset of ``"+-*/"``); parentheses appear only where
    needed, and formulas that need them are left out when ``parens`` is False. Commuted operands
    are distinct formulas. Sorted by (length, text); cached.

    >>> [format_formula(s) for s in solutions([6, 2], 12, "+*", parens=False)]
    ['2 * 6', '6 * 2']
    >>> [format_formula(s) for s in solutions([3, 3, 8, 8], 24, "+-*/", parens=True)]
    ['8 / ( 3 - 8 / 3 )']
    """
    key = tuple(sorted(operator.index(v) for v in values))
    if key and key[0] < 0:
        raise ValueError(f"card values must be non-negative, got {values!r}")
    if not set(operators) <= set(OPERATORS):
        raise ValueError(f"operators must be drawn from {OPERATORS!r}, got {operators!r}")
    canonical_ops = "".join(op for op in OPERATORS if op in operators)
    return _solutions(key, target, canonical_ops, bool(parens))


def solve(
    values: Sequence[int], target: int, operators: str, parens: bool
) -> tuple[Token, ...] | None:
    """The first of :func:`solutions`, or None if the deal has no solution.

    >>> format_formula(solve([1, 2, 3, 4], 24, "+-*/", parens=True))
    '1 * 2 * 3 * 4'
    >>> solve([1, 1, 1, 1], 24, "+-*/", parens=True) is None
    True
    """
    found = solutions(values, target, operators, parens)
    return found[0] if found else None


def complete(
    values: Sequence[int],
    target: int,
    operators: str,
    parens: bool,
    prefix: Sequence[Token],
) -> tuple[Token, ...] | None:
    """The first solution that starts with ``prefix`` (the formula written so far), or None.

    >>> complete([3, 3, 8, 8], 24, "+-*/", True, [8, "/", "("])
    (8, '/', '(', 3, '-', 8, '/', 3, ')')
    >>> complete([3, 3, 8, 8], 24, "+-*/", True, [3]) is None
    True
    """
    start = tuple(prefix)
    for tokens in solutions(values, target, operators, parens):
        if tokens[: len(start)] == start:
            return tokens
    return None
