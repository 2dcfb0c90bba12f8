"""The Prometheus harness against the real thing: backfilled history, queried over plain HTTP.

Three days of the seed workload at a 1-minute step are backfilled with promtool and served by
a real Prometheus; the PromQL documented on `SeedWorkload` must give back what the generator
made. The writer and the generator are also checked on their own, without a server.

What it must not do: depend on the wall clock (history sits at a fixed date), use port 9090,
or leave a Prometheus process behind.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.prometheus_harness import (
    BLOCK_SECONDS,
    MAX_POINTS,
    PrometheusServer,
    SeedWorkload,
    ensure_prometheus,
    seed_workload,
    trailing_mean,
    write_openmetrics,
    write_openmetrics_split,
)

START = 1_793_491_200  # 2026-11-01T00:00:00Z
DAYS = 3
STEP = 60


def query_range(url: str, promql: str, start: int, end: int, step: int) -> dict:
    params = urllib.parse.urlencode({"query": promql, "start": start, "end": end, "step": step})
    address = f"{url}/api/v1/query_range?{params}"
    with urllib.request.urlopen(address, timeout=10) as answer:  # noqa: S310 - http on loopback
        return json.load(answer)


def one_series(url: str, promql: str, start: int, end: int, step: int = STEP) -> tuple:
    """Timestamps and values of a query that returns exactly one series."""
    body = query_range(url, promql, start, end, step)
    assert body["status"] == "success"
    (result,) = body["data"]["result"]
    points = np.array(result["values"], dtype=np.float64)
    return points[:, 0].astype(np.int64), points[:, 1]


def pid_of(server: PrometheusServer) -> int | None:
    return None if server.process is None else server.process.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def workload() -> SeedWorkload:
    return seed_workload(START, DAYS, STEP)


@pytest.fixture(scope="module")
def server(
    workload: SeedWorkload, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    directory = tmp_path_factory.mktemp("prometheus")
    history = directory / "history.om"
    assert write_openmetrics(history, workload.series()) == 3 * DAYS * 1440
    with PrometheusServer(directory / "data", history) as running:
        yield running
    assert pid_of(running) is None


# --- against a real Prometheus ------------------------------------------------------------


def test_binaries_are_installed() -> None:
    for path in ensure_prometheus():
        assert os.access(path, os.X_OK)


def test_request_rate_matches_the_generator(
    server: PrometheusServer, workload: SeedWorkload
) -> None:
    end = int(workload.timestamps[-1])
    ts, values = one_series(server.url, workload.queries["rate"], START, end)
    assert ts[-1] == end
    assert len(ts) >= DAYS * 1440 - 2  # all but the first point(s), inside the first window
    k = (ts - START) // STEP
    after_window = k >= 3
    # Over [t-3m, t] the counter rose by what the generator made in the three steps before t.
    expected = trailing_mean(workload.rate, 3)[k]
    np.testing.assert_allclose(values[after_window], expected[after_window], rtol=2e-3)
    # ...which is the instantaneous rate within a few % (noise and a 1.5-minute lag).
    relative = np.abs(values / workload.rate[k] - 1)[after_window]
    assert np.median(relative) < 0.05
    assert np.quantile(relative, 0.95) < 0.12


def test_replicas_are_exact(server: PrometheusServer, workload: SeedWorkload) -> None:
    end = int(workload.timestamps[-1])
    ts, values = one_series(server.url, workload.queries["replicas"], START, end)
    np.testing.assert_array_equal(ts, workload.timestamps)
    np.testing.assert_array_equal(values, workload.replicas)


def test_cpu_matches_the_generator(server: PrometheusServer, workload: SeedWorkload) -> None:
    end = int(workload.timestamps[-1])
    ts, values = one_series(server.url, workload.queries["cpu"], START, end)
    k = (ts - START) // STEP
    after_window = k >= 3
    expected = trailing_mean(workload.cpu, 3)[k]
    np.testing.assert_allclose(values[after_window], expected[after_window], rtol=1e-4)


def test_the_last_value_is_repeated_for_five_minutes(
    server: PrometheusServer, workload: SeedWorkload
) -> None:
    last = int(workload.timestamps[-1])
    ts, values = one_series(server.url, workload.queries["replicas"], last, last + 600)
    np.testing.assert_array_equal(ts, last + STEP * np.arange(6))  # lookback delta: 5 min
    assert set(values.tolist()) == {float(workload.replicas[-1])}


def test_a_range_query_over_11000_steps_is_rejected(
    server: PrometheusServer, workload: SeedWorkload
) -> None:
    promql, step = workload.queries["replicas"], 20
    accepted = query_range(server.url, promql, START, START + MAX_POINTS * step, step)
    assert len(accepted["data"]["result"][0]["values"]) == MAX_POINTS + 1
    with pytest.raises(urllib.error.HTTPError) as rejected:
        query_range(server.url, promql, START, START + (MAX_POINTS + 1) * step, step)
    with rejected.value as error:
        assert error.code == 400
        assert "exceeded maximum resolution of 11,000 points" in error.read().decode()


def test_stop_refuses_connections_and_restart_serves_the_same_data(
    server: PrometheusServer, workload: SeedWorkload
) -> None:
    pid = pid_of(server)
    assert pid is not None
    port, url = server.port, server.url
    assert port != 9090
    blocks = sorted(p.name for p in server.data_dir.glob("*/meta.json"))
    query = workload.queries["replicas"]
    end = int(workload.timestamps[-1])

    server.stop()
    assert pid_of(server) is None
    assert not alive(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    server.restart()
    pid = pid_of(server)
    assert pid is not None
    assert server.url == url
    _, values = one_series(url, query, START, end)
    np.testing.assert_array_equal(values, workload.replicas)

    server.restart()  # while running: an outage of a fraction of a second
    assert pid_of(server) not in (None, pid)
    assert not alive(pid)
    _, values = one_series(url, query, START, end)
    np.testing.assert_array_equal(values, workload.replicas)
    assert sorted(p.name for p in server.data_dir.glob("*/meta.json")) == blocks  # no backfill
    assert server.log_path.read_text().count("--- start") == 3


def test_the_context_manager_stops_on_errors(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path / "empty")  # no history: starts all the same
    pids = []

    def crash() -> None:
        with server:
            pids.append(pid_of(server))
            ready = f"{server.url}/-/ready"
            with urllib.request.urlopen(ready, timeout=5) as answer:  # noqa: S310 - loopback
                assert answer.status == 200
            raise KeyError("boom")

    with pytest.raises(KeyError):
        crash()
    assert pid_of(server) is None
    assert pids[0] is not None
    assert not alive(pids[0])


def test_split_files_backfill_in_parallel(tmp_path: Path) -> None:
    workload = seed_workload(START, 2, 300)
    files = write_openmetrics_split(tmp_path / "om", workload.series())
    windows = {int(t) // BLOCK_SECONDS for t in workload.timestamps}
    assert [int(p.stem) for p in files] == sorted(w * BLOCK_SECONDS for w in windows)
    for path in files:
        lines = path.read_text().splitlines()
        assert lines[-1] == "# EOF"
        assert sum(line.startswith("# TYPE") for line in lines) == 3
    with PrometheusServer(tmp_path / "data", tmp_path / "om") as running:
        end = int(workload.timestamps[-1])
        _, values = one_series(running.url, workload.queries["replicas"], START, end, 300)
        np.testing.assert_array_equal(values, workload.replicas)
        _, values = one_series(running.url, workload.queries["rate"], end, end, 300)
        np.testing.assert_allclose(values, trailing_mean(workload.rate, 3)[-1:], rtol=2e-3)


def test_backfill_needs_an_empty_data_dir(tmp_path: Path) -> None:
    history = tmp_path / "history.om"
    write_openmetrics(history, seed_workload(START, 0.1).series())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "leftover").write_text("")
    server = PrometheusServer(tmp_path / "data", history)
    with pytest.raises(ValueError, match="empty data dir"):
        server.start()
    assert server.process is None


def test_retention_must_cover_the_history(tmp_path: Path) -> None:
    history = tmp_path / "history.om"
    hours = np.arange(0, 3 * 86400, 3600, dtype=np.int64) + START
    write_openmetrics(history, [("up", "gauge", {}, hours, np.ones(len(hours)))])
    server = PrometheusServer(tmp_path / "data", history, retention="2d")
    with pytest.raises(ValueError, match="retention 2d"):
        server.start()
    assert server.process is None


# --- the OpenMetrics writer ---------------------------------------------------------------


def test_openmetrics_text(tmp_path: Path) -> None:
    ts = np.array([100, 160, 220], dtype=np.int64)
    path = tmp_path / "x.om"
    written = write_openmetrics(
        path,
        [
            ("http_requests", "counter", {"path": '/a"b\\c'}, ts, np.array([0, 1.5, 3.25])),
            ("queue_depth", "gauge", {"q": "x"}, ts[:2], np.array([2.0, 7.0])),
            ("http_requests", "counter", {"path": "/"}, ts, np.array([1, 2, 3])),
            ("weird", "gauge", {}, ts, np.array([np.nan, np.inf, -1e300])),
        ],
    )
    assert written == 11
    assert path.read_text() == (
        "# TYPE http_requests counter\n"
        'http_requests_total{path="/a\\"b\\\\c"} 0e-2 100\n'
        'http_requests_total{path="/a\\"b\\\\c"} 150e-2 160\n'
        'http_requests_total{path="/a\\"b\\\\c"} 325e-2 220\n'
        'http_requests_total{path="/"} 1 100\n'
        'http_requests_total{path="/"} 2 160\n'
        'http_requests_total{path="/"} 3 220\n'
        "# TYPE queue_depth gauge\n"
        'queue_depth{q="x"} 2 100\n'
        'queue_depth{q="x"} 7 160\n'
        "# TYPE weird gauge\n"
        "weird NaN 100\n"
        "weird +Inf 160\n"
        "weird -1e+300 220\n"
        "# EOF\n"
    )


@pytest.mark.parametrize(
    ("family", "kind", "ts", "values", "message"),
    [
        ("x_total", "counter", [1, 2], [1, 2], "without _total"),
        ("x", "histogram", [1, 2], [1, 2], "counter or gauge"),
        ("x", "gauge", [2, 1], [1, 2], "must increase"),
        ("x", "gauge", [1, 1], [1, 2], "must increase"),
        ("x", "gauge", [1_700_000_000_000], [1], "milliseconds"),
        ("x", "gauge", [1, 2], [1], "equal-length"),
        ("x", "counter", [1, 2], [1, -2], "negative"),
        ("1x", "gauge", [1], [1], "invalid metric family name"),
    ],
)
def test_openmetrics_rejects(
    tmp_path: Path, family: str, kind: str, ts: list, values: list, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_openmetrics(
            tmp_path / "x.om",
            [(family, kind, {}, np.array(ts, np.int64), np.array(values, float))],  # type: ignore[list-item]
        )


# --- the generator ------------------------------------------------------------------------


def test_the_future_is_the_generator_continued() -> None:
    history = seed_workload(START, 2, seed=7)
    longer = seed_workload(START, 3, seed=7)
    future = history.future(86400)
    assert future.timestamps[0] == history.end
    for name in ("timestamps", "rate", "replicas", "cpu", "requests_total", "cpu_seconds_total"):
        np.testing.assert_array_equal(getattr(future, name), getattr(longer, name)[2 * 1440 :])
    np.testing.assert_array_equal(
        future.future(3600).rate, seed_workload(START, 3 + 1 / 24, seed=7).rate[-60:]
    )
    assert not np.array_equal(seed_workload(START, 1, seed=8).rate, longer.rate[:1440])


def test_the_seed_workload_looks_like_an_hpa_managed_nginx() -> None:
    workload = seed_workload(START, 7)
    hours = (workload.timestamps % 86400) // 3600
    hourly = np.array([workload.rate[hours == h].mean() for h in range(24)])
    assert 13 <= int(np.argmax(hourly)) <= 17
    assert int(np.argmin(hourly)) in (1, 2, 3, 4, 5)
    assert hourly.max() > 4 * hourly.min()
    assert workload.replicas.min() >= 1
    assert workload.replicas.max() <= 10
    assert len(set(workload.replicas.tolist())) >= 5
    # The true parameters are what a regression of CPU on replicas and rate finds.
    design = np.stack([workload.replicas, workload.rate], axis=1).astype(float)
    (base, cost), *_ = np.linalg.lstsq(design, workload.cpu, rcond=None)
    assert base == pytest.approx(workload.base_per_pod, rel=0.05)
    assert cost == pytest.approx(workload.cost_per_request, rel=0.05)
    # Counters integrate their signals.
    np.testing.assert_allclose(np.diff(workload.cpu_seconds_total), workload.cpu[:-1] * 60)
    assert np.all(np.abs(np.diff(workload.requests_total) - workload.rate[:-1] * 60) < 1)


def test_queries_name_the_workload() -> None:
    workload = seed_workload(START, 1, namespace="shop", ingress="web", workload="web-0")
    assert workload.queries == {
        "rate": "sum(rate(nginx_ingress_controller_requests_total"
        '{namespace="shop",ingress="web"}[3m]))',
        "cpu": "sum(rate(container_cpu_usage_seconds_total"
        '{namespace="shop",container="web-0"}[3m]))',
        "replicas": "sum(kube_statefulset_status_replicas_ready"
        '{namespace="shop",statefulset="web-0"})',
    }
    assert seed_workload(START, 1, 300).rate_window == "15m"
