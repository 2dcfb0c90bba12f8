"""One way to check input: bounded YAML documents, names and durations, input quoted briefly."""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter import InvalidConfiguration, load_config
from adapter.static import parse_values
from adapter.validation import (
    MAX_ALIASES,
    collection_paused,
    is_dns_label,
    is_dns_subdomain,
    is_label_name,
    is_metric_name,
    is_prometheus_metric_name,
    load_document,
    parse_duration,
    quote,
    read_document,
    shorten,
    validate_label,
)
from tests.samples import WEB_TARGET

NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def problems_of_both(text: str) -> tuple[list[str], list[str]]:
    """What the config loader and the values loader say about the same text."""
    with pytest.raises(InvalidConfiguration) as config:
        load_config(text, "f.yaml")
    with pytest.raises(InvalidConfiguration) as values:
        parse_values(text.encode(), "f.yaml", NOW)
    return config.value.problems, values.value.problems


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty (or holds only comments)"),
        ("# nothing yet\n", "the file is empty (or holds only comments)"),
        ("- a\n- b\n", "the file must be a mapping, not a list"),
        ("a: 1\nb: 2\na: 3\n", "line 3: key 'a' appears twice"),
        ("a: *nowhere\n", "not valid YAML: found undefined alias 'nowhere' (line 1, column 4)"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: expected a single document in the stream"),
        ("x: !!python/object:os.system {}\n", "not valid YAML: could not determine a constructor"),
        ("a: [" * 2000 + "\n", "not valid YAML:"),
    ],
)
def test_config_and_values_are_refused_alike(text: str, problem: str) -> None:
    config, values = problems_of_both(text)
    assert config == values
    assert config[0].startswith(problem), config


def test_every_duplicate_key_is_named_with_its_line() -> None:
    config, _ = problems_of_both("a: 1\nb: {c: 1, c: 2}\na: 2\n")
    assert config == ["line 2: key 'c' appears twice", "line 3: key 'a' appears twice"]


def test_merge_keys_may_be_overridden_and_aliases_within_the_bounds_load() -> None:
    document = load_document(
        "base: &base {perPod: 50, leadTime: 15m}\n"
        "one: {<<: *base, perPod: 60}\n"
        + "".join(f"n{index}: *base\n" for index in range(MAX_ALIASES - 1)),
        "f.yaml",
    )
    assert document["one"] == {"perPod": 60, "leadTime": "15m"}
    assert document[f"n{MAX_ALIASES - 2}"] == document["base"]


def test_more_aliases_than_the_bound_are_refused() -> None:
    text = "base: &b 1\n" + "".join(f"n{index}: *b\n" for index in range(MAX_ALIASES + 1))
    with pytest.raises(InvalidConfiguration) as caught:
        load_document(text, "f.yaml")
    assert caught.value.problems == [f"line 102: more than {MAX_ALIASES} aliases in one document"]


def test_a_document_that_expands_past_the_bound_is_refused_at_the_alias() -> None:
    lines = ["a: &a [" + ", ".join(["x"] * 30) + "]"]
    lines += [f"{name}: &{name} [*{prev}, *{prev}, *{prev}]" for prev, name in ("ab", "bc", "cd")]
    lines += ["e: [" + ", ".join(["*d"] * 20) + "]"]
    with pytest.raises(InvalidConfiguration) as caught:
        load_document("\n".join(lines), "f.yaml")
    assert caught.value.problems == ["line 5: the aliases stand for more than 10000 nodes"]


def test_the_size_is_checked_before_parsing() -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        load_config("a: [" * 100, "f.yaml", max_bytes=100)
    assert caught.value.problems == ["the file is 400 bytes, larger than the 100 accepted"]


def test_files_too_large_directories_and_missing_files_are_refused_unread(
    tmp_path: Path,
) -> None:
    large = tmp_path / "large.yaml"
    large.write_bytes(b"a: 1\n" * 1000)
    assert read_document(large, 5000) == b"a: 1\n" * 1000
    for path, max_bytes, problem in (
        (large, 4999, "the file is 5000 bytes, larger than the 4999 accepted"),
        (tmp_path, 100, "is a directory, not a file"),
        (tmp_path / "absent.yaml", 100, "cannot read: No such file or directory"),
    ):
        with pytest.raises(InvalidConfiguration) as caught:
            read_document(path, max_bytes)
        assert (caught.value.source, caught.value.problems) == (str(path), [problem])


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(InvalidConfiguration, match="is not a regular file"):
        read_document(fifo, 100)


def test_messages_show_at_most_80_characters_of_the_input() -> None:
    long = "x" * 1_000_000
    text = WEB_TARGET.replace("namespace: shop", f"namespace: {long}").replace(
        "name: requests", f"name: {long}-"
    )
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(text, "f.yaml")
    assert len(caught.value.problems) == 3  # the namespace, the name, and what follows
    assert all(len(problem) < 200 for problem in caught.value.problems), caught.value.problems
    assert quote(long) == "'" + "x" * 78 + "…"
    assert quote(list(range(1000))) == "[0, 1, 2, 3, ...]"
    assert quote("short") == "'short'"
    assert shorten("y" * 81) == "y" * 79 + "…"


def test_a_thousand_problems_are_one_readable_message() -> None:
    text = "values:\n" + "".join(
        f"- {{metric: m, namespace: Bad{index}, value: 1}}\n" for index in range(1000)
    )
    with pytest.raises(InvalidConfiguration) as caught:
        parse_values(text.encode(), "v.yaml", NOW)
    assert len(caught.value.problems) == 1000
    message = str(caught.value)
    assert message.startswith("v.yaml: 1000 problem(s):\n")
    assert message.endswith("\n  - ... and 950 more")
    assert len(message) < 10_000


def test_the_collector_is_resumed_after_a_load_even_a_failed_one() -> None:
    load_document("a: 1", "f.yaml")
    assert gc.isenabled()
    with pytest.raises(InvalidConfiguration):
        load_document("a: [", "f.yaml")
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # it was off: it stays off
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("1h30m", 5400),
        ("14d", 14 * 86400),
        ("500ms", 0.5),
        ("1.5m", 90),
        ("0", 0),
        ("60d", 60 * 86400),
        ("1d12h", 1.5 * 86400),
        ("2w", 14 * 86400),
        ("1y", 365 * 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "60 days", "", "m", "5x", "1h 30m"])
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("predicate", "good", "bad"),
    [
        (is_dns_label, ["web-1", "a" * 63], ["Web", "a" * 64, "-a", 1]),
        (is_dns_subdomain, ["example.com", "a"], ["-x.com", "A.com", "a" * 254]),
        (is_metric_name, ["predicted_replicas", "a:b-c"], ["a/b", "..", "a b", "%", ""]),
        (is_prometheus_metric_name, ["a:b_c", "_x"], ["9a", "a-b", 1]),
        (is_label_name, ["_private", "Camel9"], ["a-b", "9a", "a:b", 1]),
    ],
)
def test_names(predicate: Callable[[Any], bool], good: list[Any], bad: list[Any]) -> None:
    assert [name for name in good if not predicate(name)] == []
    assert [name for name in bad if predicate(name)] == []


def test_label_problems_quote_briefly() -> None:
    assert validate_label("app.kubernetes.io/name", "web") == []
    assert validate_label("Bad Key", "x") == [
        "label key 'Bad Key': name part must consist of alphanumeric characters, '-', '_' or "
        "'.', and must start and end with an alphanumeric character"
    ]
    assert validate_label("k", "v" * 100) == [
        "label k='" + "v" * 78 + "…: must be no more than 63 characters"
    ]
