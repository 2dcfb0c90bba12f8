"""`predictive-metrics-adapter replay --config --target --from --to` against a real Prometheus
with backfilled history (`tests.prometheus_harness`).

Ten days of the seed scenario at a 1-minute step (request rate with a daily cycle and a
1-hour triangle wave) are backfilled; the target reads the request rate at its 5-minute step,
once through the seed's rule (``metric:``) and once as raw PromQL (``query:``) with an
objective, and the last day is replayed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapter import PrometheusSettings, whatif
from apiservice.__main__ import main
from tests.prometheus_harness import (
    PrometheusServer,
    SeedWorkload,
    ensure_prometheus,
    free_port,
    seed_workload,
    trailing_mean,
    write_openmetrics,
)
from tests.samples import SEED_RULES

DAY = 86400
STEP = 60
DAYS = 10

CONFIG = (
    SEED_RULES
    + """
forecasts:
- name: nginx
  namespace: default
  workload: {kind: StatefulSet, name: nginx}
  traffic:
  - metric: nginx_ingress_controller_requests_rate
    selector: {ingress: nginx-server}
  capacity: {perPod: 15}
  step: 5m
  history: 2d
  leadTime: 10m
  minReplicas: 1
  maxReplicas: 20
- name: raw
  namespace: default
  traffic: {name: requests, query: 'RATE_QUERY'}
  capacity: {perPod: 15}
  step: 5m
  history: 2d
  leadTime: 10m
  maxReplicas: 20
  objective: {maxTimeAboveCapacity: 2%}
- name: cpu
  namespace: default
  traffic: {name: requests, query: 'RATE_QUERY'}
  resource: {query: 'RATE_QUERY', targetAverageValue: 1}
  replicas: {query: 'RATE_QUERY'}
  maxReplicas: 20
"""
)


@dataclasses.dataclass
class Backfilled:
    prometheus: PrometheusServer
    workload: SeedWorkload
    day: int  # the start of the last backfilled day: the replayed range
    config: Path


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    ensure_prometheus()
    directory = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) // DAY * DAY - DAY  # whole days, all in the past
    workload = seed_workload(end - DAYS * DAY, DAYS, STEP)
    write_openmetrics(directory / "history.om", workload.series())
    config = directory / "config.yaml"
    config.write_text(CONFIG.replace("RATE_QUERY", workload.queries["rate"]))
    with PrometheusServer(directory / "data", directory / "history.om") as prometheus:
        yield Backfilled(prometheus, workload, end - DAY, config)


def replay(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["replay", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def flags(backfilled: Backfilled, target: str, url: str | None = None) -> list[str]:
    return [
        "--config",
        str(backfilled.config),
        "--target",
        target,
        "--prometheus-url",
        url or backfilled.prometheus.url,
        "--from",
        str(backfilled.day),
        "--to",
        str(backfilled.day + DAY - 300),
        "--prometheus-retries",
        "0",
    ]


def policy_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("policy "))
    return {line.split(" (")[0]: line.split()[-6:] for line in lines[header + 1 : header + 4]}


@pytest.mark.timeout(600)
def test_a_rule_signal_replayed_from_prometheus(backfilled: Backfilled, tmp_path: Path) -> None:
    plot = tmp_path / "nginx.png"
    code, out, err = replay(*flags(backfilled, "default/nginx"), "--plot", str(plot))
    assert code == 0, err
    assert out.startswith(
        "Replay of nginx_ingress_controller_requests_rate of default/nginx from Prometheus: "
        "288 steps of 5m"
    )
    rows = policy_rows(out)
    assert list(rows) == ["reactive HPA", "predictive", "oracle"]
    assert rows["oracle"][:2] == ["0.000%", "0.000%"]
    for row in rows.values():
        assert float(row[2]) > 24  # pod-hours: at least one pod all day
    assert "Note:" not in out  # no gaps, the whole lead-in held
    assert plot.stat().st_size > 10_000


@pytest.mark.timeout(600)
def test_a_query_signal_with_an_objective_is_tuned_on_prometheus_history(
    backfilled: Backfilled,
) -> None:
    code, out, err = replay(*flags(backfilled, "default/raw"), "--safety-net", "0.7")
    assert code == 0, err
    assert "Objective: at most 2% of the time above capacity." in out
    assert "(2 tunings)" in out  # as the replay starts, and a day later
    assert "too little history" not in out
    assert "predictive (tuned for 2%) + reactive u=0.7" in out


def test_the_load_is_the_signal_prometheus_serves(backfilled: Backfilled) -> None:
    """The replayed load is the rule's query on the target's grid: the 3-minute rate, which
    the seed's generator knows in advance."""
    given = whatif.PrometheusInput(
        backfilled.config,
        "default/nginx",
        PrometheusSettings(url=backfilled.prometheus.url, retries=0),
        backfilled.day,
        backfilled.day + DAY - 300,
    )
    series, target = whatif.load_input(given)
    assert series.step == target.step == 300
    assert series.start == whatif.lead_in_steps(target)
    assert series.times[series.start] == backfilled.day
    workload = backfilled.workload
    expected = trailing_mean(workload.rate, 3)
    at = np.searchsorted(workload.timestamps, series.times)
    np.testing.assert_allclose(series.load, expected[at], rtol=0.01, atol=0.01)


@pytest.mark.parametrize(
    ("target", "code", "message"),
    [
        ("default/cpu", 2, "target default/cpu has a resource policy"),
        ("default/none", 2, "has no target default/none (targets: default/nginx, default/raw"),
        ("default/nginx", 1, "unreachable"),
    ],
)
def test_targets_it_cannot_replay_are_one_clear_line(
    backfilled: Backfilled, target: str, code: int, message: str
) -> None:
    # Nothing listens there; the user and password in the URL are never shown.
    url = f"http://someone:hunter2@127.0.0.1:{free_port()}" if code == 1 else None
    got, out, err = replay(*flags(backfilled, target, url))
    assert got == code
    assert out == ""
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert message in err
    assert "hunter2" not in err
