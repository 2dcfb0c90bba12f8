"""Every target isolated, values checked at the edge: the refresh path against a real
Prometheus, behind a stand-in that answers garbage for one query.

The stand-in forwards every range query to the real Prometheus except the broken target's,
which gets the garbage shape a test sets (a real Prometheus cannot answer non-numeric values).
Huge and negative samples need no stand-in: Prometheus stores and returns them as they are.
The bystander target `web` must keep serving whatever the others' series hold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, web

from adapter import (
    PredictionStore,
    PredictionUnavailable,
    PrometheusSettings,
    PrometheusSource,
    Refresher,
    load_config,
    parse_selector,
)
from forecaster import Forecaster, load_forecaster
from tests.fakes import Clock
from tests.harness import LoopThread, serve_app
from tests.pki import PKI
from tests.prometheus_harness import (
    PrometheusServer,
    Series,
    ensure_prometheus,
    write_openmetrics,
)

DAY = 86400
STEP = 300


def target(name: str, family: str) -> str:
    return f"""
- name: {name}
  namespace: shop
  traffic: {{name: requests, query: 'sum({family})'}}
  capacity: {{perPod: 50}}
  step: 5m
  history: 2d
  leadTime: 15m
  maxReplicas: 20
"""


CONFIG = "forecasts:" + "".join(
    target(name, f"{name}_requests") for name in ("web", "broken", "spiky", "negative")
)


class StandIn:
    """Forwards range queries to Prometheus; answers `garbage` for the broken target's."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.garbage: Any = None
        self.session: ClientSession | None = None

    async def query_range(self, request: web.Request) -> web.Response:
        if "broken_requests" in request.query["query"]:
            span = int(float(request.query["start"])), int(float(request.query["end"]))
            body = self.garbage(*span) if callable(self.garbage) else self.garbage
            return web.Response(text=body, content_type="application/json")
        assert self.session is not None
        async with self.session.get(
            f"{self.upstream}/api/v1/query_range", params=dict(request.query)
        ) as answer:
            return web.Response(
                body=await answer.read(), status=answer.status, content_type="application/json"
            )


@pytest.fixture(scope="module")
def model() -> Forecaster:
    return load_forecaster()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """Two days at 5 min; the adapter's "now" is 2 h before the end (Prometheus holds more)."""
    ensure_prometheus()
    directory = tmp_path_factory.mktemp("isolation")
    end = int(time.time()) // DAY * DAY - DAY
    now = end - 7200
    stamps = np.arange(end - 2 * DAY, end + 1, STEP, dtype=np.int64)
    load = 200 + 150 * np.sin(2 * np.pi * (stamps % DAY) / DAY)
    spiky = np.where((stamps > now - 3600) & (stamps <= now - 1800), 1e308, load)
    series: list[Series] = [
        ("web_requests", "gauge", {}, stamps, load),
        ("spiky_requests", "gauge", {}, stamps, spiky),
        ("negative_requests", "gauge", {}, stamps, -load),
    ]
    write_openmetrics(directory / "history.om", series)
    with PrometheusServer(directory / "data", directory / "history.om") as prometheus:
        yield prometheus, now


@pytest.fixture(scope="module")
def stand_in(
    history: tuple[PrometheusServer, int], loop_thread: LoopThread, pki: PKI
) -> Iterator[tuple[StandIn, str]]:
    prometheus, _ = history
    fake = StandIn(prometheus.url)

    async def start() -> tuple[web.AppRunner, int]:
        fake.session = ClientSession()
        app = web.Application()
        app.router.add_get("/api/v1/query_range", fake.query_range)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.serving.cert, pki.serving.key)
        return await serve_app(app, context)

    runner, port = loop_thread.run(start())
    yield fake, f"https://localhost:{port}"
    assert fake.session is not None
    loop_thread.run(fake.session.close())
    loop_thread.run(runner.cleanup())


Pipeline = Callable[[Clock], tuple[Refresher, PredictionStore]]


@pytest.fixture
def pipeline(stand_in: tuple[StandIn, str], model: Forecaster, pki: PKI) -> Iterator[Pipeline]:
    """Refresher and store on a clock, reading through the stand-in; closed after the test."""
    settings = PrometheusSettings(url=stand_in[1], ca_file=pki.path("serving-ca"), retries=0)
    made: list[tuple[PrometheusSource, Refresher]] = []

    def make(clock: Clock) -> tuple[Refresher, PredictionStore]:
        source = PrometheusSource(settings)
        store = PredictionStore(clock)
        refresher = Refresher(source, model, store, ttl=600, clock=clock)
        refresher.configure(load_config(CONFIG, "test"))
        made.append((source, refresher))
        return refresher, store

    yield make
    for source, refresher in made:
        refresher.close()
        source.close()


def served(store: PredictionStore, name: str, metric: str = "predicted_replicas") -> float:
    (item,) = store.get_values("shop", metric, parse_selector(f"target={name}"))
    return float(item.value)


def refused(store: PredictionStore, name: str, metric: str = "predicted_replicas") -> str:
    with pytest.raises(PredictionUnavailable) as caught:
        store.get_values("shop", metric, parse_selector(f"target={name}"))
    return str(caught.value)


def matrix(values: list[list[Any]]) -> str:
    series = [{"metric": {}, "values": values}]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": series}})


GARBAGE = {
    "a value that is not a number": (
        lambda start, _: matrix([[start, "1.5"], [start + STEP, "lots"]]),
        'with a sample that is not [timestamp, "number"]: [',
    ),
    "a sample without a value": (
        lambda start, _: matrix([[start, "1.5"], [start + STEP]]),
        'with a sample that is not [timestamp, "number"]: [',
    ),
    "an answer without data": ('{"status": "success"}', "without data.result"),
    "result: null": (
        '{"status": "success", "data": {"resultType": "matrix", "result": null}}',
        "with a result that is not a list of series: None",
    ),
    "an answer that is not JSON": ("<html>gateway</html>", "with text that is not JSON"),
}


def clean(start: int, end: int) -> str:
    """A well-formed answer: 100 requests at every step."""
    return matrix([[t, "100"] for t in range(start, end + 1, STEP)])


@pytest.mark.parametrize("shape", list(GARBAGE))
def test_a_garbage_series_fails_its_target_alone(
    shape: str,
    stand_in: tuple[StandIn, str],
    history: tuple[PrometheusServer, int],
    pipeline: Pipeline,
) -> None:
    garbage, reason = GARBAGE[shape]
    stand_in[0].garbage = garbage
    refresher, store = pipeline(Clock(history[1]))
    report = asyncio.run(refresher.refresh())
    assert 1 <= served(store, "web") <= 8  # the bystander: 50..350 requests at 50 per pod
    message = refused(store, "broken")
    assert "cannot read history (signal:requests): Prometheus answered" in message
    assert reason in message
    status = {s.name: s.last_error for s in refresher.status()}
    assert status["web"] == ""
    assert reason in status["broken"]  # refresh_failing is 1, with the reason
    assert report.failed == 3  # broken, and the spiky and negative targets (below)


def test_a_lasting_failure_is_logged_once_per_change(
    stand_in: tuple[StandIn, str],
    history: tuple[PrometheusServer, int],
    pipeline: Pipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapter")
    clock = Clock(history[1])
    refresher, store = pipeline(clock)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "shop/broken" in r.getMessage()]

    stand_in[0].garbage = GARBAGE["result: null"][0]
    for _ in range(3):
        asyncio.run(refresher.refresh())
        clock.now += STEP
    assert len(lines()) == 1
    stand_in[0].garbage = GARBAGE["an answer without data"][0]
    asyncio.run(refresher.refresh())
    assert len(lines()) == 2
    assert "without data.result" in lines()[1]
    stand_in[0].garbage = clean
    asyncio.run(refresher.refresh())
    assert served(store, "broken") == 2.0  # 100 requests at 50 per pod
    assert len(lines()) == 3
    assert "refreshed again" in lines()[2]
    asyncio.run(refresher.refresh())
    assert len(lines()) == 3


def test_huge_samples_are_refused_with_a_reason_and_the_target_recovers(
    stand_in: tuple[StandIn, str],
    history: tuple[PrometheusServer, int],
    pipeline: Pipeline,
) -> None:
    stand_in[0].garbage = clean
    clock = Clock(history[1])
    refresher, store = pipeline(clock)
    asyncio.run(refresher.refresh())
    for metric in ("predicted_replicas", "predicted_requests"):
        message = refused(store, "spiky", metric)  # a 503 with the reason: never a 500
        assert "refused samples of requests: 1e+308 is beyond 9.22e+15" in message
    assert 1 <= served(store, "web") <= 8
    # The spike stays in Prometheus; a refresh whose answer no longer holds it is clean.
    clock.now += 3 * STEP
    asyncio.run(refresher.refresh())
    (status,) = [s for s in refresher.status() if s.name == "spiky"]
    assert status.last_error == ""
    assert 1 <= served(store, "spiky") <= 8  # planned from the clean points, not maxReplicas
    assert 0 < served(store, "spiky", "predicted_requests") < 1000


def test_a_negative_history_is_refused_never_served_as_zero(
    stand_in: tuple[StandIn, str],
    history: tuple[PrometheusServer, int],
    pipeline: Pipeline,
) -> None:
    stand_in[0].garbage = clean
    clock = Clock(history[1])
    refresher, store = pipeline(clock)
    for _ in range(2):
        asyncio.run(refresher.refresh())
        for metric in ("predicted_replicas", "predicted_requests"):
            assert "is negative, which no load" in refused(store, "negative", metric)
        clock.now += STEP
    assert 1 <= served(store, "web") <= 8
