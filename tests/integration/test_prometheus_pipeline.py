"""The whole pipeline against a real Prometheus with 15 days of backfilled history, read
through the real API server over TLS: accuracy of the served replicas against the
generator's truth, outages, and a broken configuration.

The seed scenario (`tests.prometheus_harness.seed_workload`): an nginx StatefulSet behind
ingress nginx-server; request rate with a daily cycle and a 1-hour triangle wave; CPU that
follows requests and replicas; ready replicas from a reactive HPA. The adapter's clock is
virtual: it is stepped through the last day of the backfilled history, so Prometheus holds
the future the forecasts are judged against while the adapter never asks for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from adapter import PrometheusSettings
from apiservice.server import Server
from apiservice.settings import ProviderSettings
from tests.fakes import Clock
from tests.harness import Client, LoopThread, settings_for
from tests.pki import PKI
from tests.prometheus_harness import (
    PrometheusServer,
    SeedWorkload,
    ensure_prometheus,
    seed_workload,
    write_openmetrics,
)
from tests.samples import SEED_RULES

DAY = 86400
STEP = 60
TARGET_PER_POD = 0.1  # 40 % of a 0.25-core request
METRIC = (
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/predicted_replicas"
    "?labelSelector=target%3Dnginx"
)

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
  resource:
    query: 'CPU_QUERY'
    targetUtilization: 40
    request: 0.25
  replicas:
    query: 'REPLICAS_QUERY'
  step: 5m
  history: 14d
  leadTime: 10m
  minReplicas: 1
  maxReplicas: 20
  quantile: 0.9
"""
)


@dataclasses.dataclass
class Backfilled:
    prometheus: PrometheusServer
    workload: SeedWorkload
    evaluation_start: int  # the adapter's "now" starts here; Prometheus holds a day more
    config: str


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    ensure_prometheus()
    directory = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) // DAY * DAY - DAY  # whole days, all in the past
    workload = seed_workload(end - 15 * DAY, 15, STEP)
    write_openmetrics(directory / "history.om", workload.series())
    config = CONFIG.replace("CPU_QUERY", workload.queries["cpu"]).replace(
        "REPLICAS_QUERY", workload.queries["replicas"]
    )
    with PrometheusServer(directory / "data", directory / "history.om") as prometheus:
        yield Backfilled(prometheus, workload, end - DAY, config)


def start_adapter(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    backfilled: Backfilled,
    clock: Clock,
    **provider: object,
) -> Server:
    config = tmp_path / "config.yaml"
    config.write_text(backfilled.config)
    settings = settings_for(pki, None, tmp_path / "unused.yaml")
    options = {
        "config_file": config,
        "refresh_interval": 500.0,  # after the first, the tests drive refreshes themselves
        "prediction_ttl": 600.0,
        "reload_interval": 0.2,
        "prometheus": PrometheusSettings(url=backfilled.prometheus.url, timeout=5, retries=0),
        **provider,
    }
    settings = dataclasses.replace(settings, provider=ProviderSettings(**options))  # type: ignore[arg-type]
    server = make_server(settings, clock=clock)
    assert server.refresher is not None
    began = time.monotonic()
    while server.refresher.last_report is None:  # the refresh the server starts with
        assert time.monotonic() - began < 30
        time.sleep(0.05)
    return server


def served(server: Server, pki: PKI) -> tuple[int, dict]:
    with Client(server.port, pki.path("serving-ca"), pki.admin) as client:
        answer = client.get(METRIC)
    return answer.status, answer.json()


def oracle(workload: SeedWorkload, start: int, seconds: int) -> int:
    """Replicas the true load needs at the target over (start, start + seconds]."""
    rows = (workload.timestamps > start) & (workload.timestamps <= start + seconds)
    usage_per_pod_over_base = workload.cost_per_request * workload.rate[rows]
    need = usage_per_pod_over_base / (TARGET_PER_POD - workload.base_per_pod)
    return int(np.clip(math.ceil(float(need.max()) - 1e-9), 1, 20))


@pytest.mark.timeout(600)
def test_served_replicas_cover_the_true_need_without_waste(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    backfilled: Backfilled,
    loop_thread: LoopThread,
) -> None:
    clock = Clock(backfilled.evaluation_start)
    server = start_adapter(make_server, pki, tmp_path, backfilled, clock)
    assert server.refresher is not None
    lead = 600
    predicted, needed = [], []
    for now in range(backfilled.evaluation_start, backfilled.evaluation_start + DAY - lead, 600):
        clock.now = now
        report = loop_thread.run(server.refresher.refresh())
        assert report.failed == 0, server.refresher.status()
        code, body = served(server, pki)
        assert code == 200, body
        (item,) = body["items"]
        predicted.append(int(item["value"]))
        needed.append(oracle(backfilled.workload, now, lead))
    predicted_a, needed_a = np.array(predicted), np.array(needed)
    coverage = float(np.mean(predicted_a >= needed_a))
    hours = float(predicted_a.sum() / needed_a.sum())
    print(
        f"\n{len(predicted)} windows of 10 min over one day: covered {100 * coverage:.1f} %, "
        f"replica-hours {100 * hours:.1f} % of the oracle "
        f"(served {predicted_a.min()}..{predicted_a.max()}, "
        f"needed {needed_a.min()}..{needed_a.max()})"
    )
    (status,) = server.refresher.status()
    assert status.policy == "resource/regression"
    assert coverage >= 0.90
    assert 0.70 <= hours <= 1.30  # within 30 % of the oracle


@pytest.mark.timeout(120)
def test_outage_serves_until_expiry_then_503_and_recovers_within_a_refresh(
    make_server: Callable[..., Server], pki: PKI, tmp_path: Path, backfilled: Backfilled
) -> None:
    clock = Clock(backfilled.evaluation_start)
    server = start_adapter(
        make_server, pki, tmp_path, backfilled, clock, refresh_interval=1.0, prediction_ttl=300.0
    )
    assert server.refresher is not None

    def wait(condition: Callable[[], bool], what: str, seconds: float = 20) -> float:
        began = time.monotonic()
        while not condition():
            assert time.monotonic() - began < seconds, f"timed out waiting for {what}"
            time.sleep(0.05)
        return time.monotonic() - began

    wait(lambda: served(server, pki)[0] == 200, "a first prediction")
    code, before = served(server, pki)
    backfilled.prometheus.stop()
    try:
        # The newest point was at the start; its prediction expires one step (300 s) plus the
        # TTL (300 s) later. A step on, a new point is due and the refresh fails.
        clock.now += 300
        (status,) = server.refresher.status()
        wait(lambda: bool(status.last_error), "a failed refresh")
        code, during = served(server, pki)
        assert code == 200
        assert during["items"] == before["items"]  # the last prediction, within its expiry
        clock.now += 300  # past it
        code, body = served(server, pki)
        assert (code, body["reason"]) == (503, "ServiceUnavailable")
        assert "unreachable" in body["message"]
        assert "0" not in [item.get("value") for item in body.get("items", [])]
    finally:
        backfilled.prometheus.restart()
    recovered = wait(lambda: served(server, pki)[0] == 200, "fresh predictions after the restart")
    print(f"\nserving again {recovered:.2f} s after Prometheus restarted (refresh interval 1 s)")
    assert recovered < 3.0


@pytest.mark.timeout(120)
def test_a_config_with_three_mistakes_is_rejected_whole_and_the_old_one_keeps_serving(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    backfilled: Backfilled,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock(backfilled.evaluation_start)
    server = start_adapter(make_server, pki, tmp_path, backfilled, clock)
    assert server.refresher is not None
    loop_thread.run(server.refresher.refresh())
    assert served(server, pki)[0] == 200
    broken = (
        backfilled.config.replace("leadTime: 10m", "leadTime: ten")
        .replace("maxReplicas: 20", "maxReplicas: -1")
        .replace("<<.Series>>", "<<.Serie>>")
    )
    (tmp_path / "config.yaml").write_text(broken)
    failures = server.instrumentation.reload_failures.labels("config")
    began = time.monotonic()
    while failures._value.get() < 1:
        assert time.monotonic() - began < 10
        time.sleep(0.05)
    messages = [
        r.getMessage()
        for r in caplog.records
        if "keeping the current configuration" in r.getMessage()
    ]
    assert len(messages) == 1
    assert "3 problem(s)" in messages[0]
    for problem in ("leadTime", "maxReplicas", "<<.Serie>>"):
        assert problem in messages[0]
    loop_thread.run(server.refresher.refresh())
    assert served(server, pki)[0] == 200  # the old configuration still serves
    (tmp_path / "config.yaml").write_text(
        backfilled.config.replace("maxReplicas: 20", "maxReplicas: 12")
    )
    began = time.monotonic()
    while not any("configuration reloaded" in r.getMessage() for r in caplog.records):
        assert time.monotonic() - began < 10, "the corrected file was not adopted"
        time.sleep(0.05)
    assert failures._value.get() == 1
    print("\n" + json.dumps(messages[0])[:400])
