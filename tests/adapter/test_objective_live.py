"""Scaling for an objective, live: the peak log, the calibrated served count, tuning, and what
/metrics and the result ConfigMap say of it.

The model is a stand-in that knows the load's clean daily curve: its median is that curve
(so its errors are the series' noise), its other quantiles the curve plus a fixed spread. The
history comes from the data-driven Prometheus stand-in, the clock is virtual.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from adapter import (
    PredictionStore,
    Refresher,
    backfill as backfill_module,
    load_config,
    objective as objective_module,
    parse_selector,
    planning as planning_module,
    refresher as refresher_module,
)
from apiservice.instrumentation import Instrumentation
from forecaster import Forecast
from tests.fakes import Clock, FakeHistorySource

DAY = 86400
STEP = 300
NOW = 1_790_000_000.0
END = int(NOW // STEP) * STEP
"""The newest history point at `NOW`: the current origin is one step after it."""
SPREAD = 100.0
"""The stand-in's quantile q is its median plus (q - 0.5) x SPREAD."""
WINDOW = 4
"""leadTime 15m at 5m steps: the lead window holds now and the three steps after."""


def clean(stamps: np.ndarray) -> np.ndarray:
    """A daily cycle, rising around `NOW` (so a lead window's maximum is its last step)."""
    return 200 - 150 * np.sin(2 * np.pi * (np.asarray(stamps) % DAY) / DAY)


def noisy(stamps: np.ndarray) -> np.ndarray:
    """The clean curve with heavy-tailed bursts, the same at each timestamp on every read."""
    stamps = np.asarray(stamps, dtype=np.int64)
    burst = np.array([np.random.default_rng(int(t)).pareto(1.5) for t in stamps])
    return clean(stamps) * (1 + 0.3 * burst)


class Oracle:
    """A model that forecasts the clean curve; records what it is asked, and from where."""

    def __init__(self, fail_backfill_of: float | None = None) -> None:
        self.calls: list[tuple[int, int, str]] = []
        """(histories, horizon, thread name) per call."""
        self.fail_backfill_of = fail_backfill_of
        """A history this far above the clean curve fails every call with another horizon
        than the serving forecast's (the backfill's), and only those."""

    def forecast_batch(
        self,
        histories: Sequence[tuple[np.ndarray, np.ndarray]],
        horizon: int,
        quantiles: Sequence[float] = (0.5,),
    ) -> list[Forecast]:
        self.calls.append((len(histories), horizon, threading.current_thread().name))
        out = []
        for times, values in histories:
            offset = float(values[-1] - clean(times[-1:])[0])
            if horizon != 48 and abs(offset - (self.fail_backfill_of or math.nan)) < 1e-6:
                raise ValueError("this series cannot be backfilled")
            first = int(times[-1]) + STEP
            median = clean(first + STEP * np.arange(horizon))
            rows = np.stack([median + (q - 0.5) * SPREAD for q in quantiles])
            out.append(Forecast(tuple(quantiles), rows, "model", STEP, first))
        return out

    def backfilled(self) -> int:
        """Origins forecast by backfills so far."""
        return sum(n for n, horizon, _ in self.calls if horizon == WINDOW)


def target(name: str, *, query: str = "web_requests", extra: str = "") -> str:
    return f"""
- name: {name}
  namespace: shop
  traffic: {{name: requests, query: {query}}}
  capacity: {{perPod: 50}}
  leadTime: 15m
  maxReplicas: 100
  quantile: 0.9{extra}
"""


class Writer:
    def __init__(self) -> None:
        self.written: list[tuple[str, str, Mapping[str, str]]] = []

    async def write(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self.written.append((namespace, name, data))


def pipeline(
    text: str,
    signals: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    *,
    model: Oracle | None = None,
    backfill: int = 256,
    writer: Writer | None = None,
) -> tuple[Refresher, PredictionStore, Clock, FakeHistorySource, Oracle]:
    clock = Clock(NOW)
    source = FakeHistorySource(signals=dict(signals), now=NOW)
    model = model or Oracle()
    store = PredictionStore(clock)
    refresher = Refresher(
        source,
        model,  # type: ignore[arg-type]
        store,
        ttl=600,
        clock=clock,
        writer=writer,
        backfill_origins=backfill,
    )
    refresher.configure(load_config("forecasts:" + text, "test"))
    return refresher, store, clock, source, model


def advance(clock: Clock, source: FakeHistorySource, steps: int = 1) -> None:
    clock.now = source.now = clock.now + steps * STEP


def served(store: PredictionStore, name: str = "web") -> int:
    (item,) = store.get_values("shop", "predicted_replicas", parse_selector(f"target={name}"))
    return int(item.value)


def log_of(refresher: Refresher, name: str = "web") -> np.ndarray:
    """The peak log on the grid of origins END - 2000 steps .. END + 1 step."""
    peaks = refresher._states["shop", name].peaks
    assert peaks is not None
    return peaks.aligned(END - 2000 * STEP, 2002)


def true_peak(origin: int) -> float:
    """What the stand-in's median peaks at over the lead window from `origin`."""
    return float(clean(origin + STEP * np.arange(WINDOW)).max())


def test_the_peak_log_fills_from_refreshes_and_a_bounded_backfill_newest_first() -> None:
    refresher, _, clock, source, model = pipeline(
        target("web") + target("api", query="api_requests"),
        {"web_requests": clean, "api_requests": clean},
        backfill=100,
    )
    asyncio.run(refresher.refresh())
    assert model.backfilled() == 100  # one target took the whole budget: enough to calibrate
    web, api = log_of(refresher), log_of(refresher, "api")
    known = {name: int(np.sum(np.isfinite(log))) for name, log in (("web", web), ("api", api))}
    assert sorted(known.values()) == [1, 101]  # each refresh logs its own origin
    full = web if known["web"] == 101 else api
    # Newest first: the 100 origins before the current one, on the history's grid.
    assert np.isfinite(full[-101:]).all()
    assert np.isnan(full[:-101]).all()
    origins = END - 2000 * STEP + STEP * np.arange(2002)
    for index in (-1, -2, -50, -101):
        assert full[index] == pytest.approx(true_peak(int(origins[index])))
    advance(clock, source)
    asyncio.run(refresher.refresh())
    assert model.backfilled() == 200  # the other target's turn: it held fewer
    counts = [refresher._states["shop", n].peaks.count() for n in ("web", "api")]  # type: ignore[union-attr]
    assert counts == [102, 102]
    statuses = {s.name: s.peak_origins for s in refresher.status()}
    assert statuses == {"web": 102, "api": 102}


def test_served_count_uses_the_calibrated_bound_once_enough_errors_are_known() -> None:
    """A series that began 50 steps ago, no backfill: the log grows by one origin per refresh.
    Too few errors: the model's own quantile. Then the last value's errors (known from the
    history) calibrate the bound; once the model's own MIN_ERRORS errors are known its exact
    median wins."""
    began = END - 49 * STEP

    def recent(stamps: np.ndarray) -> np.ndarray:
        return np.where(stamps >= began, clean(stamps), np.nan)

    refresher, store, clock, source, _ = pipeline(
        target("web"), {"web_requests": recent}, backfill=0
    )
    minimum = objective_module.MIN_ERRORS
    bounds = []
    for cycle in range(1, minimum + WINDOW + 2):
        asyncio.run(refresher.refresh())
        (status,) = refresher.status()
        assert status.sizing is not None
        points = 50 + cycle - 1
        # Errors known: each needs a whole lead window of load, and the last value before it
        # or the model's peak logged at its origin.
        last_value_errors, model_errors = points - WINDOW, cycle - WINDOW
        expected = (
            "model"
            if model_errors >= minimum
            else "last value"
            if last_value_errors >= minimum
            else "model quantile"
        )
        assert status.sizing.bound == expected, cycle
        assert status.sizing.calibrated == (expected != "model quantile")
        origin = int(clock.now // STEP) * STEP + STEP
        peak = true_peak(origin)
        if expected == "model quantile":
            assert served(store) == math.ceil((peak + 0.4 * SPREAD) / 50 - 1e-9)
        if expected == "model":  # the median is exact: no error to add
            assert served(store) == math.ceil(peak / 50 - 1e-9)
        bounds.append(expected)
        advance(clock, source)
    assert bounds.count("model") == 2
    assert bounds.count("model quantile") == minimum + WINDOW - 50


def test_a_target_with_an_objective_gets_a_choice_shown_in_metrics_and_the_configmap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapter")
    writer = Writer()
    refresher, store, clock, source, model = pipeline(
        target("web", extra="\n  objective: {maxTimeAboveCapacity: 5%}\n  resultConfigMap: true"),
        {"web_requests": lambda t: clean(t) * (1 + 0.05 * np.sin(t / 7.0))},
        backfill=2000,
        writer=writer,
    )
    store_metrics = Instrumentation()
    store_metrics.watch(refresher, store)
    asyncio.run(refresher.refresh())
    (status,) = refresher.status()
    sizing = status.sizing
    assert sizing is not None
    assert sizing.tuned
    assert sizing.met
    assert sizing.calibrated
    assert sizing.objective == 0.05
    assert 0 <= sizing.time_above_capacity <= 0.05
    assert sizing.cost > 0
    text = store_metrics.exposition().decode()
    key = '{namespace="shop",target="web"}'
    for line in (
        f"predictive_metrics_adapter_setting_quantile{key} {sizing.quantile}",
        f"predictive_metrics_adapter_setting_forecast_utilisation{key} "
        f"{sizing.forecast_utilisation}",
        f"predictive_metrics_adapter_objective_max_time_above_capacity_ratio{key} 0.05",
        f"predictive_metrics_adapter_objective_headroom_ratio{key} 0.0",
        f"predictive_metrics_adapter_objective_met{key} 1.0",
        f"predictive_metrics_adapter_setting_tuned{key} 1.0",
        f"predictive_metrics_adapter_bound_calibrated{key} 1.0",
        f"predictive_metrics_adapter_expected_time_above_capacity_ratio{key} "
        f"{sizing.time_above_capacity}",
        f"predictive_metrics_adapter_expected_cost_ratio{key} {sizing.cost}",
    ):
        assert line in text, line
    reactive = f"predictive_metrics_adapter_setting_reactive_utilisation{key}"
    assert (reactive in text) == (sizing.reactive_utilisation is not None)
    ((_, name, data),) = writer.written
    assert name == "web-result"
    assert data["quantile"] == f"{sizing.quantile:g}"
    assert data["objectiveMet"] == "true"
    assert data["tuned"] == "true"
    assert data["boundCalibrated"] == "true"
    assert data["objectiveMaxTimeAboveCapacity"] == "0.05"
    assert float(data["expectedCost"]) == pytest.approx(sizing.cost, rel=1e-5)
    assert "of the time above capacity" in data["sizing"]
    chosen = [r for r in caplog.records if "sizing for" in r.getMessage()]
    assert len(chosen) == 1
    assert chosen[0].levelno == logging.INFO
    # The choice is served: the next refresh plans with it, and logs nothing new.
    advance(clock, source)
    asyncio.run(refresher.refresh())
    assert [r for r in caplog.records if "sizing for" in r.getMessage()] == chosen
    assert writer.written[-1][2]["quantile"] == f"{sizing.quantile:g}"
    assert model.calls[-1][1] == 48  # no backfill left to do: the log is full


def test_an_objective_that_cannot_be_met_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapter")
    writer = Writer()
    refresher, store, clock, source, _ = pipeline(
        target("web", extra="\n  objective: {maxTimeAboveCapacity: 0%}\n  resultConfigMap: true"),
        {"web_requests": noisy},
        backfill=2000,
        writer=writer,
    )
    metrics = Instrumentation()
    metrics.watch(refresher, store)
    for _ in range(2):
        asyncio.run(refresher.refresh())
        advance(clock, source)
    (status,) = refresher.status()
    assert status.sizing is not None
    assert status.sizing.tuned
    assert status.sizing.met is False
    assert status.sizing.time_above_capacity > 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot be met" in warnings[0].getMessage()
    assert 'objective_met{namespace="shop",target="web"} 0.0' in metrics.exposition().decode()
    data = writer.written[-1][2]
    assert data["objectiveMet"] == "false"
    assert "cannot be met" in data["sizing"]
    assert served(store) >= 1  # the closest setting is served


def test_too_little_history_serves_the_manual_quantile_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapter")
    writer = Writer()
    refresher, store, clock, source, _ = pipeline(
        target(
            "web",
            extra="\n  history: 1d\n  objective: {maxTimeAboveCapacity: 1%}\n"
            "  resultConfigMap: true",
        ),
        {"web_requests": clean},
        writer=writer,
    )
    metrics = Instrumentation()
    metrics.watch(refresher, store)
    for _ in range(2):
        asyncio.run(refresher.refresh())
        (status,) = refresher.status()
        assert status.sizing is not None
        assert not status.sizing.tuned
        assert status.sizing.met is None
        assert (status.sizing.quantile, status.sizing.forecast_utilisation) == (0.9, 1.0)
        assert status.sizing.reactive_utilisation is None
        assert "too little history" in status.sizing.reason
        origin = int(clock.now // STEP) * STEP + STEP
        # Calibrated on the day (a day of origins holds MIN_ERRORS errors): the exact median.
        assert status.sizing.calibrated
        assert served(store) == math.ceil(true_peak(origin) / 50 - 1e-9)
        advance(clock, source)
    told = [r for r in caplog.records if "too little history" in r.getMessage()]
    assert len(told) == 1
    assert told[0].levelno == logging.INFO
    text = metrics.exposition().decode()
    assert 'setting_tuned{namespace="shop",target="web"} 0.0' in text
    assert "objective_met{" not in text
    data = writer.written[-1][2]
    assert data["tuned"] == "false"
    assert "too little history" in data["sizing"]
    assert "objectiveMet" not in data


def test_tuning_and_backfill_run_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[str, set[str]] = {"median_peaks": set(), "tune": set()}

    def recorded(name: str, function: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            threads[name].add(threading.current_thread().name)
            return function(*args, **kwargs)

        return call

    for module, name in ((backfill_module, "median_peaks"), (planning_module, "tune")):
        monkeypatch.setattr(module, name, recorded(name, getattr(module, name)))
    refresher, _, _, _, _ = pipeline(
        target("web", extra="\n  objective: {maxTimeAboveCapacity: 5%}"),
        {"web_requests": clean},
        backfill=2000,
    )
    asyncio.run(refresher.refresh())
    (status,) = refresher.status()
    assert status.sizing is not None
    assert status.sizing.tuned
    loop_thread = threading.current_thread().name
    for name, seen in threads.items():
        assert seen, name
        assert loop_thread not in seen, name
        assert all(thread.startswith("forecast") for thread in seen), seen


def test_a_failing_backfill_fails_only_that_target_backfill(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapter")
    odd = lambda t: clean(t) + 0.125  # noqa: E731 - the stand-in refuses to backfill it
    model = Oracle(fail_backfill_of=0.125)
    refresher, store, clock, source, _ = pipeline(
        target("web") + target("odd", query="odd_requests"),
        {"web_requests": clean, "odd_requests": odd},
        model=model,
        backfill=2000,
    )
    report = asyncio.run(refresher.refresh())
    assert report.failed == 0
    assert served(store, "odd") >= 1
    assert served(store, "web") >= 1
    assert int(np.sum(np.isfinite(log_of(refresher, "web")))) > 1
    assert int(np.sum(np.isfinite(log_of(refresher, "odd")))) == 1  # its own origin only

    def odd_backfills() -> int:  # the web target's log is full: any backfill now is odd's
        return sum(1 for _, horizon, _ in model.calls if horizon == WINDOW)

    tried = odd_backfills()
    clock.now = source.now = NOW + 60  # no new point: the failed backfill waits for one
    asyncio.run(refresher.refresh())
    assert odd_backfills() == tried
    clock.now = source.now = NOW + STEP  # a new point: tried again, failing the same way
    asyncio.run(refresher.refresh())
    assert odd_backfills() == tried + 1
    complaints = [r for r in caplog.records if "cannot forecast past origins" in r.getMessage()]
    assert len(complaints) == 1
    assert "shop/odd" in complaints[0].getMessage()
    assert {s.name: s.last_error for s in refresher.status()} == {"web": "", "odd": ""}


def test_a_changed_history_starts_a_fresh_log_and_an_unchanged_one_keeps_log_and_choice() -> None:
    text = "forecasts:" + target("web", extra="\n  objective: {maxTimeAboveCapacity: 5%}")
    refresher, _, _, source, _ = pipeline(text[len("forecasts:") :], {"web_requests": clean})
    asyncio.run(refresher.refresh())
    before = refresher._states["shop", "web"]
    assert before.peaks is not None
    assert before.peaks.count() > 1
    before.choice = objective_module.Choice(
        objective_module.manual_setting(0.8), True, None, 1.0, "made up"
    )
    refresher.configure(load_config(text, "test"))
    same = refresher._states["shop", "web"]
    assert same.peaks is before.peaks
    assert same.choice is before.choice
    refresher.configure(load_config(text.replace("100", "90"), "test"))
    other_max = refresher._states["shop", "web"]
    assert other_max.peaks is before.peaks  # the log rests on the history and lead window...
    assert other_max.choice is None  # ...a tuning also on what it replays against
    source.signals["other"] = clean
    refresher.configure(load_config(text.replace("web_requests", "other"), "test"))
    fresh = refresher._states["shop", "web"]
    assert fresh.peaks is not None
    assert fresh.peaks.count() == 0
    refresher.configure(load_config(text.replace("15m", "20m"), "test"))
    assert refresher._states["shop", "web"].peaks is not fresh.peaks


def test_targets_due_together_are_tuned_a_few_per_cycle_never_tuned_first() -> None:
    names = [f"app{i}" for i in range(6)]
    text = "".join(
        target(name, query="web_requests", extra="\n  objective: {maxTimeAboveCapacity: 5%}")
        for name in names
    )
    refresher, _, clock, source, _ = pipeline(text, {"web_requests": clean}, backfill=20_000)
    tuned = []
    for _ in range(3):
        asyncio.run(refresher.refresh())
        tuned.append(sum(1 for s in refresher.status() if s.sizing and s.sizing.tuned))
        advance(clock, source)
    per_cycle = refresher_module.TUNINGS_PER_CYCLE
    assert tuned == [per_cycle, 6, 6]
