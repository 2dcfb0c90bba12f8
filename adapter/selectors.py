"""Kubernetes label selectors: parse the `labelSelector` query parameter, match series labels.

The grammar and the matching rules are those of Kubernetes' own parser, because the HPA, KEDA
and kubectl produce their selectors with it:

    selector     ::= requirement ("," requirement)*
    requirement  ::= ["!"] KEY [ ("in" | "notin") "(" VALUE ("," VALUE)* ")"
                               | ("=" | "==" | "!=" | ">" | "<") VALUE ]

- whitespace separates tokens; ``in``/``notin`` are keywords only where an operator may stand;
- KEY is ``[DNS_SUBDOMAIN "/"] NAME`` (NAME at most 63 characters), VALUE at most 63 characters
  of ``[A-Za-z0-9_.-]`` (the empty value is valid);
- ``!=`` and ``notin`` also match series that lack the key; ``>``/``<`` compare integers;
- requirements are sorted by key, values within a set are sorted and unique, all are ANDed;
- the empty selector matches everything.

Pure functions only: no I/O, no logging. A malformed selector raises `InvalidSelector` with a
message a user can act on; the API surface turns it into a 400.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping

from adapter.errors import InvalidSelector
from adapter.validation import label_key_problems, label_value_problems, shorten

_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Operator(enum.Enum):
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = ">"
    LESS_THAN = "<"


_SET_OPERATORS = frozenset({Operator.IN, Operator.NOT_IN})
_PINNING = frozenset({Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN})
_BINARY = {
    "=": Operator.EQUALS,
    "==": Operator.DOUBLE_EQUALS,
    "!=": Operator.NOT_EQUALS,
    "in": Operator.IN,
    "notin": Operator.NOT_IN,
    ">": Operator.GREATER_THAN,
    "<": Operator.LESS_THAN,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    """One condition on one label key."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS | Operator.DOUBLE_EQUALS | Operator.IN:
                return value is not None and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return value is None or value not in self.values
            case Operator.EXISTS:
                return value is not None
            case Operator.DOES_NOT_EXIST:
                return value is None
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                actual = _as_int64(value)
                if actual is None:
                    return False
                bound = int(self.values[0])
                return actual > bound if self.operator is Operator.GREATER_THAN else actual < bound

    def __str__(self) -> str:
        match self.operator:
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(self.values)})"
            case _:
                return f"{self.key}{self.operator.value}{self.values[0]}"


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """Requirements that must all hold; no requirements selects everything."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def exact_values(self) -> dict[str, str]:
        """Keys whose value the selector pins to exactly one value (for index look-ups)."""
        pinned: dict[str, str] = {}
        for requirement in self.requirements:
            if requirement.operator in _PINNING and len(requirement.values) == 1:
                pinned.setdefault(requirement.key, requirement.values[0])
        return pinned

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


EVERYTHING = Selector()


def parse_selector(text: str) -> Selector:
    """Parse a `labelSelector`; raises `InvalidSelector` on any error."""
    return _Parser(_tokens(text)).parse()


# --- lexer -------------------------------------------------------------------------------

_IDENTIFIER, _END = "identifier", "end of string"


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, literal) pairs; kind is an operator or punctuation literal, _IDENTIFIER or _END."""
    if "\x00" in text:
        raise InvalidSelector("the selector contains a NUL character")
    tokens: list[tuple[str, str]] = []
    position, length = 0, len(text)
    while True:
        while position < length and text[position] in _WHITESPACE:
            position += 1
        if position == length:
            tokens.append((_END, ""))
            return tokens
        if text[position] in _SPECIAL:
            # Longest operator that the special characters here spell: "!=", "==", else one.
            pair = text[position : position + 2]
            if pair in ("!=", "=="):
                tokens.append((pair, pair))
                position += 2
            else:
                tokens.append((text[position], text[position]))
                position += 1
            continue
        start = position
        while (
            position < length
            and text[position] not in _SPECIAL
            and text[position] not in _WHITESPACE
        ):
            position += 1
        word = text[start:position]
        tokens.append((word if word in ("in", "notin") else _IDENTIFIER, word))


# --- parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._position = 0

    def _peek(self, *, as_value: bool = True) -> tuple[str, str]:
        kind, literal = self._tokens[self._position]
        # Where a key or value may stand, "in" and "notin" are ordinary words.
        if as_value and kind in ("in", "notin"):
            kind = _IDENTIFIER
        return kind, literal

    def _next(self, *, as_value: bool = True) -> tuple[str, str]:
        token = self._peek(as_value=as_value)
        self._position += 1
        return token

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self._peek()
            if kind == _END:
                break
            if kind not in (_IDENTIFIER, "!"):
                raise InvalidSelector(
                    f"found '{shorten(literal)}', expected: !, identifier, or 'end of string'"
                )
            try:
                requirements.append(self._requirement())
            except InvalidSelector as exc:
                raise InvalidSelector(f"unable to parse requirement: {exc}") from None
            kind, literal = self._next()
            if kind == _END:
                break
            if kind != ",":
                raise InvalidSelector(
                    f"found '{shorten(literal)}', expected: ',' or 'end of string'"
                )
            kind, literal = self._peek()
            if kind not in (_IDENTIFIER, "!"):
                raise InvalidSelector(f"found '{shorten(literal)}', expected: identifier after ','")
        requirements.sort(key=lambda requirement: requirement.key)
        return Selector(tuple(requirements))

    def _requirement(self) -> Requirement:
        kind, key = self._next()
        negated = kind == "!"
        if negated:
            kind, key = self._next()
        if kind != _IDENTIFIER:
            raise InvalidSelector(f"found '{shorten(key)}', expected: identifier")
        _check(label_key_problems(key), key)
        if negated:
            # "!key" takes no operator; the caller rejects anything but "," or the end.
            return Requirement(key, Operator.DOES_NOT_EXIST)
        if self._peek()[0] in (_END, ","):
            return Requirement(key, Operator.EXISTS)
        kind, literal = self._next(as_value=False)
        operator = _BINARY.get(kind)
        if operator is None:
            raise InvalidSelector(
                f"found '{shorten(literal)}', expected: in, notin, =, ==, !=, gt, lt"
            )
        values = self._set() if operator in _SET_OPERATORS else self._exact()
        for value in values:
            _check(label_value_problems(value), value)
        if operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and _as_int64(values[0]) is None:
            raise InvalidSelector(
                "for 'gt', 'lt' operators, the value must be an integer, "
                f"not '{shorten(values[0])}'"
            )
        return Requirement(key, operator, values)

    def _exact(self) -> tuple[str, ...]:
        kind, _ = self._peek()
        if kind in (_END, ","):
            return ("",)
        kind, literal = self._next()
        if kind != _IDENTIFIER:
            raise InvalidSelector(f"found '{shorten(literal)}', expected: identifier")
        return (literal,)

    def _set(self) -> tuple[str, ...]:
        kind, literal = self._next()
        if kind != "(":
            raise InvalidSelector(f"found '{shorten(literal)}' expected: '('")
        values: set[str] = set()
        expect_value = True
        while True:
            kind, literal = self._next()
            if kind == ")":
                if expect_value:
                    values.add("")  # "()" and "(a,)" hold the empty value
                return tuple(sorted(values))
            if kind == ",":
                if expect_value:
                    values.add("")  # "(,a)" and "(a,,b)"
                expect_value = True
            elif kind == _IDENTIFIER and expect_value:
                values.add(literal)
                expect_value = False
            else:
                raise InvalidSelector(
                    f"found '{shorten(literal)}', expected: ',', ')' or identifier"
                )


def _check(problems: list[str], subject: str) -> None:
    if problems:
        raise InvalidSelector(f"invalid value '{shorten(subject)}': " + "; ".join(problems))


def _as_int64(text: str | None) -> int | None:
    if text is None or not _INT64.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None
