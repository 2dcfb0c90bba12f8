"""Label selectors: Kubernetes' grammar and matching rules, tables plus properties."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, strategies as st

from adapter import InvalidSelector, Selector, parse_selector
from adapter.selectors import Operator, Requirement

PARSED = [
    ("", ""),
    ("   ", ""),
    ("a=b", "a=b"),
    ("a==b", "a==b"),
    ("a!=b", "a!=b"),
    ("a", "a"),
    ("!a", "!a"),
    (" a = b , c ", "a=b,c"),
    ("z=1,a=2", "a=2,z=1"),  # sorted by key
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("k in (b,a,b)", "k in (a,b)"),
    ("a=", "a="),
    ("a in (in)", "a in (in)"),
    ("in in (notin)", "in in (notin)"),
    ("a=in", "a=in"),
    ("a>5", "a>5"),
    ("a<10", "a<10"),
    ("example.com/key-1.x_y=V.1-2_3", "example.com/key-1.x_y=V.1-2_3"),
    ("scaledobject.keda.sh/name=web", "scaledobject.keda.sh/name=web"),
    ("a\tin\t(b)", "a in (b)"),
]


@pytest.mark.parametrize(("text", "canonical"), PARSED)
def test_valid_selectors_parse_to_their_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


INVALID = [
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("a b", "expected: in, notin, =, ==, !=, gt, lt"),
    ("a,", "expected: identifier after ','"),
    (",a", "expected: !, identifier, or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a in b", "expected: '('"),
    ("a in (b", "expected: ',', ')' or identifier"),
    ("a in (b c)", "expected: ',', ')' or identifier"),
    ("a=(b)", "expected: identifier"),
    ("a>b", "must be an integer"),
    ("a>-1", "a label value must be empty or consist of"),
    ("A/b=c", "prefix part must be a lowercase DNS subdomain"),
    ("a/b/c=d", "at most one '/'"),
    ("/a=b", "prefix part must be non-empty"),
    ("a/=b", "name part must be non-empty"),
    ("-a=b", "name part must consist of alphanumeric characters"),
    ("a=-b", "a label value must be empty or consist of"),
    ("a=" + "v" * 64, "must be no more than 63 characters"),
    ("k" * 64 + "=v", "name part must be no more than 63 characters"),
    ("ä=b", "name part must consist of"),
    ("a=b\x00c", "NUL"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_selectors_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidSelector, match=re.escape(message)):
        parse_selector(text)


MATCHING = [
    # selector, labels, matches
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", {}, False),
    ("a!=b", {}, True),  # absent keys satisfy !=
    ("a!=b", {"a": "b"}, False),
    ("a!=b", {"a": "c"}, True),
    ("a in (b,c)", {"a": "c"}, True),
    ("a in (b,c)", {}, False),
    ("a notin (b,c)", {}, True),  # and notin
    ("a notin (b,c)", {"a": "b"}, False),
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("!a", {}, True),
    ("!a", {"a": "x"}, False),
    ("a=", {"a": ""}, True),
    ("a in ()", {"a": ""}, True),
    ("a>5", {"a": "6"}, True),
    ("a>5", {"a": "5"}, False),
    ("a>5", {"a": "x"}, False),
    ("a>5", {}, False),
    ("a<5", {"a": "-3"}, True),
    ("a=b,c=d", {"a": "b", "c": "d"}, True),
    ("a=b,c=d", {"a": "b"}, False),
    ("", {"anything": "x"}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHING)
def test_matching_follows_kubernetes(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


def test_exact_values_name_the_pinned_keys() -> None:
    selector = parse_selector("target=web,tier in (api),zone in (a,b),x!=y")
    assert selector.exact_values() == {"target": "web", "tier": "api"}


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_invalid_selector(text: str) -> None:
    with contextlib.suppress(InvalidSelector):
        parse_selector(text)


@given(st.text(alphabet="ab=!(), \tinotk<>/.-_0", max_size=40))
def test_selector_like_text_parses_or_raises_invalid_selector(text: str) -> None:
    try:
        selector = parse_selector(text)
    except InvalidSelector:
        return
    # Whatever parses prints back to something that parses to the same selector.
    assert parse_selector(str(selector)) == selector


names = st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,10}[a-z0-9])?", fullmatch=True)
values = st.one_of(st.just(""), names)
prefixed = st.builds(
    lambda p, n: f"{p}/{n}", st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True), names
)
keys = st.one_of(names, prefixed)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    operator = draw(st.sampled_from(list(Operator)))
    key = draw(keys)
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        return Requirement(key, operator)
    if operator in (Operator.IN, Operator.NOT_IN):
        return Requirement(
            key, operator, tuple(sorted(draw(st.sets(values, min_size=1, max_size=4))))
        )
    if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        return Requirement(key, operator, (str(draw(st.integers(0, 10**6))),))
    return Requirement(key, operator, (draw(values),))


@given(st.lists(requirements(), max_size=5))
def test_generated_selectors_round_trip(reqs: list[Requirement]) -> None:
    selector = Selector(tuple(sorted(reqs, key=lambda r: r.key)))
    assert parse_selector(str(selector)) == selector


def test_an_error_quotes_a_long_token_only_in_part() -> None:
    long_value = "v" * 5000
    with pytest.raises(InvalidSelector) as refused:
        parse_selector(f"a in ({long_value} {long_value})")
    assert len(str(refused.value)) < 300
