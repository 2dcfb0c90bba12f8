"""The refresh path with a data-driven Prometheus stand-in and a virtual clock.

(The same path against a real Prometheus is in tests/integration.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Mapping

import numpy as np
import pytest
from blockbuster import BlockBusterFunction, BlockingError

from adapter import (
    EVERYTHING,
    PredictionStore,
    PredictionUnavailable,
    Refresher,
    backfill,
    load_config,
    objective,
    parse_selector,
    scaling,
)
from forecaster import Forecaster, InvalidSeries, load_forecaster
from tests.fakes import Clock, FakeHistorySource
from tests.samples import WEB_TARGET

DAY = 86400
NOW = 1_790_000_000.0


def daily_load(stamps: np.ndarray) -> np.ndarray:
    return 200 + 150 * np.sin(2 * np.pi * (stamps % DAY) / DAY)


CAPACITY = WEB_TARGET


@pytest.fixture(scope="module")
def model() -> Forecaster:
    return load_forecaster()


def pipeline(
    text: str, source: FakeHistorySource, model: Forecaster, clock: Clock, **kwargs: object
) -> tuple[Refresher, PredictionStore]:
    store = PredictionStore(clock)
    refresher = Refresher(source, model, store, ttl=600, clock=clock, **kwargs)  # type: ignore[arg-type]
    refresher.configure(load_config(text, "test"))
    return refresher, store


def value(
    store: PredictionStore, metric: str, selector: str = "target=web", namespace: str = "shop"
) -> float:
    (item,) = store.get_values(namespace, metric, parse_selector(selector))
    return float(item.value)


def test_capacity_target_end_to_end_and_incremental_history(model: Forecaster) -> None:
    clock = Clock(NOW)
    source = FakeHistorySource(signals={"web_requests": daily_load}, now=NOW)
    refresher, store = pipeline(CAPACITY, source, model, clock)
    with pytest.raises(PredictionUnavailable, match="warming up"):
        store.get_values("shop", "predicted_replicas", EVERYTHING)
    report = asyncio.run(refresher.refresh())
    assert (report.targets, report.failed, report.queries) == (1, 0, 1)
    (query, start, end, step) = source.calls[0]
    assert (end - start) // step + 1 == 14 * 288  # the whole window, first time
    # The lead window: the step in progress up to the one 15 minutes on (four steps).
    future = NOW - NOW % 300 + 300 * np.arange(1, 5)
    need = int(np.ceil(daily_load(future).max() * 1.0 / 50))
    replicas = value(store, "predicted_replicas")
    assert need <= replicas <= need + 2  # the calibrated 0.9 bound of a clean cycle
    (status,) = refresher.status()
    assert status.sizing is not None
    assert status.sizing.bound == "model"  # the backfill logged enough of the model's errors
    assert status.peak_origins == 257  # the refresh's origin and 256 backfilled before it
    assert value(store, "predicted_requests") == pytest.approx(daily_load(future[2:3])[0], rel=0.05)
    clock.now = source.now = NOW + 60
    asyncio.run(refresher.refresh())  # nothing new on a 5-minute grid yet
    clock.now = source.now = NOW + 600
    asyncio.run(refresher.refresh())
    (_, start, end, _) = source.calls[-1]
    assert (end - start) // 300 + 1 <= 5  # after warm-up: a short query


def test_outage_serves_the_last_prediction_until_it_expires_then_503(model: Forecaster) -> None:
    clock = Clock(NOW)
    source = FakeHistorySource(signals={"web_requests": daily_load}, now=NOW)
    refresher, store = pipeline(CAPACITY, source, model, clock)
    asyncio.run(refresher.refresh())
    before = value(store, "predicted_replicas")
    source.down = True
    clock.now = source.now = NOW + 300
    report = asyncio.run(refresher.refresh())
    assert report.failed == 1
    assert value(store, "predicted_replicas") == before  # still within the TTL
    expiry = NOW - NOW % 300 + 300 + 600  # one step and the TTL after the newest point
    clock.now = source.now = expiry - 1
    assert value(store, "predicted_replicas") == before
    clock.now = source.now = expiry
    with pytest.raises(PredictionUnavailable, match="cannot read history .*unreachable") as caught:
        store.get_values("shop", "predicted_replicas", parse_selector("target=web"))
    assert caught.value.retry_after
    source.down = False
    asyncio.run(refresher.refresh())
    assert value(store, "predicted_replicas") >= 1  # fresh again after one refresh


def test_unknown_namespace_or_metric_is_404_not_503(model: Forecaster) -> None:
    from adapter import MetricNotFound

    refresher, store = pipeline(
        CAPACITY,
        FakeHistorySource(signals={"web_requests": daily_load}, now=NOW),
        model,
        Clock(NOW),
    )
    with pytest.raises(MetricNotFound):
        store.get_values("other", "predicted_replicas", EVERYTHING)
    with pytest.raises(MetricNotFound):
        store.get_values("shop", "predicted_replicas", parse_selector("target=nobody"))
    assert [m.name for m in store.list_metrics()] == ["predicted_replicas", "predicted_requests"]


RESOURCE = """
rules:
- seriesQuery: '{__name__=~"^http_requests.*"}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_rate"}
  metricsQuery: "sum(rate(<<.Series>>{<<.LabelMatchers>>}[3m])) by (<<.GroupBy>>)"
forecasts:
- name: api
  namespace: shop
  traffic: {metric: http_requests_rate, selector: {service: api}}
  resource: {query: api_cpu, targetAverageValue: 0.5}
  replicas: {query: api_ready}
  leadTime: 10m
  maxReplicas: 50
  resultConfigMap: true
"""
RENDERED = 'sum(rate(http_requests_total{namespace="shop",service="api"}[3m])) by (service)'


class Writer:
    def __init__(self) -> None:
        self.written: list[tuple[str, str, Mapping[str, str]]] = []

    async def write(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self.written.append((namespace, name, data))


def test_rule_metric_resource_policy_and_kapacity_result(model: Forecaster) -> None:
    ready = lambda t: np.ceil(daily_load(t) / 40)  # noqa: E731 - a reactive HPA's history
    source = FakeHistorySource(
        signals={
            RENDERED: daily_load,
            "api_cpu": lambda t: 0.05 * ready(t) + 0.002 * daily_load(t),
            "api_ready": ready,
        },
        series={'{__name__=~"^http_requests.*"}': ["http_requests_total"]},
        now=NOW,
    )
    writer = Writer()
    refresher, store = pipeline(RESOURCE, source, model, Clock(NOW), writer=writer)
    report = asyncio.run(refresher.refresh())
    assert report.failed == 0, refresher.status()
    (status,) = refresher.status()
    assert status.policy == "resource/regression"
    future = NOW - NOW % 300 + 300 * np.arange(1, 3)
    need = int(np.ceil(0.002 * daily_load(future).max() / (0.5 - 0.05)))
    assert need <= value(store, "predicted_replicas", "target=api") <= need + 1
    assert value(store, "predicted_http_requests_rate", "service=api") > 0
    ((namespace, name, data),) = writer.written
    assert (namespace, name, data["type"]) == ("shop", "api-result", "TimeSeries")
    series = json.loads(data["timeSeries"])
    assert len(series) == 48
    assert all(
        key.isdigit() and isinstance(count, int) and 1 <= count <= 50
        for key, count in series.items()
    )
    assert data["expireTime"].endswith("Z")


def test_a_refit_to_the_same_usage_model_is_logged_once(
    model: Forecaster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fits: list[scaling.UsageModel] = []

    def fit(*_: object) -> scaling.UsageModel:
        fits.append(scaling.UsageModel(0.0, (0.002,), "proportional", math.nan))  # a new object
        return fits[-1]

    monkeypatch.setattr(scaling, "fit_usage", fit)
    ready = lambda t: np.ceil(daily_load(t) / 40)  # noqa: E731
    source = FakeHistorySource(
        signals={
            RENDERED: daily_load,
            "api_cpu": lambda t: 0.002 * daily_load(t),
            "api_ready": ready,
        },
        series={'{__name__=~"^http_requests.*"}': ["http_requests_total"]},
        now=NOW,
    )
    clock = Clock(NOW)
    refresher, _ = pipeline(RESOURCE, source, model, clock)
    with caplog.at_level(logging.INFO, logger="adapter"):
        for hour in range(3):  # each refresh an hour on: the usage model is due for a refit
            clock.now = source.now = NOW + 3600 * hour
            assert asyncio.run(refresher.refresh()).failed == 0
    assert len(fits) == 3
    logged = [r.getMessage() for r in caplog.records if "usage model" in r.getMessage()]
    assert logged == [
        "target shop/api: usage model proportional: base 0 per replica, costs 0.002 (the "
        "fallback where no regression fits the history: no held-out error)"
    ]


def test_a_target_without_data_fails_alone(model: Forecaster) -> None:
    text = (
        CAPACITY
        + """
- name: empty
  namespace: shop
  traffic: {name: nothing, query: empty_query}
  capacity: {perPod: 5}
  maxReplicas: 3
"""
    )
    source = FakeHistorySource(
        signals={"web_requests": daily_load, "empty_query": lambda t: np.full(len(t), np.nan)},
        now=NOW,
    )
    refresher, store = pipeline(text, source, model, Clock(NOW))
    report = asyncio.run(refresher.refresh())
    assert report.failed == 1
    assert value(store, "predicted_replicas") >= 1
    with pytest.raises(PredictionUnavailable, match="no data for nothing"):
        store.get_values("shop", "predicted_replicas", parse_selector("target=empty"))


def test_reconfiguring_keeps_history_of_unchanged_targets(model: Forecaster) -> None:
    clock = Clock(NOW)
    source = FakeHistorySource(signals={"web_requests": daily_load}, now=NOW)
    refresher, _ = pipeline(CAPACITY, source, model, clock)
    asyncio.run(refresher.refresh())
    refresher.configure(load_config(CAPACITY.replace("maxReplicas: 20", "maxReplicas: 30"), "test"))
    clock.now = source.now = NOW + 600
    asyncio.run(refresher.refresh())
    (_, start, end, _) = source.calls[-1]
    assert (end - start) // 300 + 1 <= 5  # no full reload


class Picky:
    """The real model, except that it cannot read a series ending in 777 (as a batch)."""

    def __init__(self, model: Forecaster) -> None:
        self.model = model
        self.batches: list[int] = []

    def forecast_batch(self, histories: list, horizon: int, quantiles: tuple) -> list:
        self.batches.append(len(histories))
        if any(values[-1] == 777 for _, values in histories):
            raise InvalidSeries("series 1 is unreadable")
        return self.model.forecast_batch(histories, horizon, quantiles)


def test_a_model_error_fails_only_the_target_whose_series_caused_it(model: Forecaster) -> None:
    text = CAPACITY + CAPACITY.replace("forecasts:", "").replace("web", "odd")
    source = FakeHistorySource(
        signals={"web_requests": daily_load, "odd_requests": lambda t: np.full(len(t), 777.0)},
        now=NOW,
    )
    picky = Picky(model)
    # No backfill: only the serving forecasts reach the model (the backfill's own isolation
    # is in test_objective_live).
    refresher, store = pipeline(text, source, picky, Clock(NOW), backfill_origins=0)  # type: ignore[arg-type]
    report = asyncio.run(refresher.refresh())
    assert report.failed == 1
    assert picky.batches == [2, 1, 1]  # the batch, then each target alone
    assert value(store, "predicted_replicas") >= 1
    with pytest.raises(PredictionUnavailable, match=r"forecaster failed \(InvalidSeries\)"):
        store.get_values("shop", "predicted_replicas", parse_selector("target=odd"))


def test_planning_runs_off_the_event_loop(model: Forecaster) -> None:
    """The policy, the usage fit, the calibrated bound and the backfill count as blocking:
    blockbuster fails them on a loop."""
    ready = lambda t: np.ceil(daily_load(t) / 40)  # noqa: E731
    source = FakeHistorySource(
        signals={
            RENDERED: daily_load,
            "api_cpu": lambda t: 0.05 * ready(t) + 0.002 * daily_load(t),
            "api_ready": ready,
        },
        series={'{__name__=~"^http_requests.*"}': ["http_requests_total"]},
        now=NOW,
    )
    text = RESOURCE + CAPACITY.replace("forecasts:", "")
    source.signals["web_requests"] = daily_load
    refresher, store = pipeline(text, source, model, Clock(NOW), writer=Writer())
    names = [
        (scaling, "fit_usage"),
        (scaling, "resource_replicas"),
        (objective, "lead_window_bounds"),
        (objective, "counts"),
        (backfill, "median_peaks"),
    ]
    blocking = [BlockBusterFunction(module, name).activate() for module, name in names]
    try:
        report = asyncio.run(refresher.refresh())
    finally:
        for function in blocking:
            function.deactivate()
    assert report.failed == 0, refresher.status()
    assert value(store, "predicted_replicas", "target=api") >= 1
    assert value(store, "predicted_replicas") >= 1
    with pytest.raises(BlockingError):  # the guard does guard
        asyncio.run(_on_the_loop(BlockBusterFunction(scaling, "capacity_replicas")))


async def _on_the_loop(function: BlockBusterFunction) -> None:
    function.activate()
    try:
        scaling.capacity_replicas(np.ones(3), 1.0, 1, 5)
    finally:
        function.deactivate()
