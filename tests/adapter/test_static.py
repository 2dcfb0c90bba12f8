"""The static values provider: strict loading, all problems at once, last good values kept."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest

from adapter import EVERYTHING, InvalidConfiguration, MetricNotFound, StaticProvider, parse_selector

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)

GOOD = """
values:
  - {metric: predicted_replicas, namespace: shop, labels: {target: web}, value: 4}
  - {metric: predicted_replicas, namespace: shop, labels: {target: api}, value: 2}
"""


def provider(tmp_path: Path, text: str) -> StaticProvider:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    static = StaticProvider(path, clock=lambda: NOW)
    static.load()
    return static


def test_serves_matching_series_only(tmp_path: Path) -> None:
    static = provider(tmp_path, GOOD)
    (value,) = static.get_values("shop", "predicted_replicas", parse_selector("target=web"))
    assert (value.labels, str(value.value), value.timestamp) == ({"target": "web"}, "4", NOW)
    assert len(static.get_values("shop", "predicted_replicas", EVERYTHING)) == 2
    assert [m.name for m in static.list_metrics()] == ["predicted_replicas"]


@pytest.mark.parametrize(
    ("namespace", "metric", "selector"),
    [
        ("shop", "predicted_replicas", "target=none"),
        ("other", "predicted_replicas", ""),
        ("shop", "nope", ""),
    ],
)
def test_nothing_matching_is_not_found_never_empty(
    tmp_path: Path, namespace: str, metric: str, selector: str
) -> None:
    with pytest.raises(MetricNotFound):
        provider(tmp_path, GOOD).get_values(namespace, metric, parse_selector(selector))


def test_every_problem_is_reported_at_once_with_its_place(tmp_path: Path) -> None:
    bad = """
extra: 1
values:
  - {metric: "a/b", namespace: Shop, labels: {"Bad Key": x}, value: -1, window: 1.5, colour: red}
  - {metric: ok, namespace: shop, value: .nan}
  - {metric: ok, namespace: shop, value: "7"}
  - {metric: dup, namespace: shop, value: 1}
  - {metric: dup, namespace: shop, value: 2}
  - {metric: big, namespace: shop, value: 1.0e+300}
"""
    with pytest.raises(InvalidConfiguration) as caught:
        provider(tmp_path, bad)
    problems = caught.value.problems
    expected = [
        "extra: unknown field",
        "values[0].colour: unknown field",
        "values[0].metric: must be a non-empty name",
        "values[0].namespace: must be a DNS-1123 label",
        "values[0].labels.Bad Key:",
        "values[0].value: -1 is negative",
        "values[0].window: must be a whole number",
        "values[1].value: NaN is not a value",
        "values[2].value: must be a number",
        "values[4]: the same metric, namespace and labels appear twice",
        "values[5].value: 1e+300 is beyond 9.22e+15, the most the HPA's 64-bit milli-value",
    ]
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)


def test_a_bad_reload_keeps_the_last_good_values(tmp_path: Path) -> None:
    static = provider(tmp_path, GOOD)
    static.path.write_text("values: [{metric: predicted_replicas}]")  # type: ignore[union-attr]
    with pytest.raises(InvalidConfiguration):
        static.reload_if_changed()
    assert len(static.get_values("shop", "predicted_replicas", EVERYTHING)) == 2
    static.path.write_text(GOOD.replace("value: 4", "value: 5"))  # type: ignore[union-attr]
    assert static.reload_if_changed() is True
    assert static.reload_if_changed() is False
    (value,) = static.get_values("shop", "predicted_replicas", parse_selector("target=web"))
    assert str(value.value) == "5"


def test_rejected_contents_are_not_parsed_again_until_they_change(tmp_path: Path) -> None:
    static = provider(tmp_path, GOOD)
    assert static.path is not None
    static.path.write_text("values: [{metric: predicted_replicas}]")
    with pytest.raises(InvalidConfiguration):
        static.reload_if_changed()
    assert static.reload_if_changed() is False  # the same rejected bytes: nothing to report
    static.path.unlink()
    static.path.mkdir()
    for _ in range(2):  # unreadable: raised every time (the server logs it once)
        with pytest.raises(InvalidConfiguration, match="is a directory"):
            static.reload_if_changed()
    static.path.rmdir()
    static.path.write_text("values: [{metric: predicted_replicas}]")
    with pytest.raises(InvalidConfiguration):  # back after a change of problem: looked at again
        static.reload_if_changed()
    assert len(static.get_values("shop", "predicted_replicas", EVERYTHING)) == 2


def test_an_empty_file_is_refused_and_the_values_kept(tmp_path: Path) -> None:
    static = provider(tmp_path, GOOD)
    assert static.path is not None
    static.path.write_text("")
    with pytest.raises(InvalidConfiguration, match="the file is empty"):
        static.reload_if_changed()
    assert len(static.get_values("shop", "predicted_replicas", EVERYTHING)) == 2


def test_an_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path: Path) -> None:
    lines = ["  a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, 8):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    bomb = "anchors:\n" + "\n".join(lines) + "\nvalues: [{metric: m, namespace: shop, value: *h}]"
    began = time.perf_counter()
    with pytest.raises(InvalidConfiguration) as caught:
        provider(tmp_path, bomb)
    assert time.perf_counter() - began < 1
    assert len(str(caught.value)) < 1024


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match="cannot read"):
        StaticProvider(tmp_path / "absent.yaml").load()


def test_index_finds_one_series_among_many(tmp_path: Path) -> None:
    lines = ["values:"] + [
        f"  - {{metric: m, namespace: ns, labels: {{target: t{i}, shard: s{i % 7}}}, value: {i}}}"
        for i in range(1000)
    ]
    static = provider(tmp_path, "\n".join(lines))
    (value,) = static.get_values("ns", "m", parse_selector("target=t737,shard=s2"))
    assert str(value.value) == "737"
    assert len(static.get_values("ns", "m", parse_selector("shard in (s3)"))) == 143
    assert len(static.get_values("ns", "m", parse_selector("shard notin (s3)"))) == 857
