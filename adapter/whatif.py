"""What-if replays (``predictive-metrics-adapter replay``): a load history replayed through a
simulated HPA under the reactive HPA, the configured predictive setup and an oracle.

**Input.** A CSV of ``ts,value`` rows (`CsvInput`: the last `days` are replayed, everything
before is history; the target is given by its fields), or a configured target's traffic signal
read from Prometheus (`PrometheusInput`: the range ``from .. to`` is replayed; the history the
setup needs before it, `lead_in_steps`, is read with it). Either way the load is one value per
step on the target's grid, NaN where nothing was recorded.

**Policies**, each through `adapter.simulator.simulate` with a realistic HPA (``Autoscaler``
defaults: 15 s sync, 10 % tolerance, the default behaviour; the target's min and max; pods
ready `ReplayOptions.startup` after being ordered, by default the lead time), from the count a
reactive HPA at 0.7 would hold, over `REPLAY_WARMUP` unscored steps before the replayed range:

1. the reactive HPA: the load itself as the metric, one step late, at
   `ReplayOptions.reactive_utilisation` of a pod's capacity;
2. the predictive setup as the adapter serves it: at every step the count
   `objective.counts` from the calibrated lead-window bounds (`objective.lead_window_bounds`
   over median peaks made with `adapter.backfill.median_peaks`), the model's own quantile
   over the window where no bound is calibrated yet; the setting is the target's manual
   quantile, or for an objective the one `objective.tune` chose at the replay's start and
   every `objective.RETUNE_SECONDS` after, each time on the steps before that time only;
   served as one ``AverageValue 1`` metric with the HPA's tolerance, plus the reactive metric
   at `ReplayOptions.safety_net` as a second metric when asked;
3. the oracle: knows the future and serves exactly the pods the load over the step and the
   start-up after it needs at the reactive utilisation (tolerance 0).

`sweep` replays the predictive setup for every `objective.SETTINGS` entry and the reactive HPA
at 0.7 .. 0.3: the cost/shortfall frontier. `render` writes the tables.

Forecasts come only through `adapter.backfill` (`Forecaster.forecast_batch` in batches, as the
refresher makes them). Nothing decided for a step reads that step's load or a later one, the
oracle aside.

What it must not do: print, log, write files or read a clock; the only I/O is reading the CSV
and asking the history source (`load_input`), and it never puts a credential in a message.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import forecaster
from adapter import backfill, objective, planning, rules as rules_module
from adapter.config import (
    AdapterConfig,
    CapacityPolicy,
    ForecastTarget,
    TrafficSignal,
    load_config,
)
from adapter.errors import InvalidConfiguration, QueryFailed, SourceError
from adapter.history import History, counter_rate
from adapter.objective import Bounds, Choice, Objective, Setting
from adapter.prometheus import HistorySource, PrometheusSettings, PrometheusSource
from adapter.simulator import Autoscaler, ExternalMetric, Scores, reactive_metric, score, simulate
from adapter.validation import MAX_DOCUMENT_BYTES, read_document, shorten

__all__ = [
    "REACTIVE_UTILISATIONS",
    "REPLAY_WARMUP",
    "CsvInput",
    "LoadSeries",
    "Outcome",
    "PolicyRun",
    "PrometheusInput",
    "ReplayOptions",
    "Report",
    "Sweep",
    "SweepPoint",
    "Tuning",
    "WhatIfError",
    "lead_in_steps",
    "load_input",
    "parse_headroom",
    "parse_objective",
    "parse_time",
    "render",
    "replay",
    "run_replay",
    "sweep",
]

REPLAY_WARMUP = objective.WARMUP_STEPS
"""Steps replayed before the replayed range, unscored, so that each policy starts settled."""
REACTIVE_UTILISATIONS = (0.7, 0.6, 0.5, 0.4, 0.3)
"""The reactive HPAs of a sweep."""
BASELINE = objective.BASELINE_UTILISATION
"""A sweep's costs are pod-hours over those of the reactive HPA at this utilisation."""
SYNC_SECONDS = Autoscaler(max_replicas=1).sync_period_seconds
"""The HPA's sync period: a step must be a multiple of it."""
MAX_CSV_STEPS = 5_000_000
"""A gridded CSV longer than this is refused (about 9.5 years at one minute)."""


class WhatIfError(Exception):
    """Why a replay cannot be made: one line for the user, and the exit code to leave with
    (2: the input is unusable; 1: the history source or the model failed)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# --- inputs -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadSeries:
    """The load on the target's grid: history, then the replayed range."""

    times: np.ndarray
    """Unix seconds of each step (multiples of the step)."""
    load: np.ndarray
    """The load of each step; NaN where nothing was recorded."""
    start: int
    """Index of the first replayed step."""
    source: str
    """What was read, for the report (never a credential)."""
    notes: tuple[str, ...] = ()

    @property
    def step(self) -> int:
        return int(self.times[1] - self.times[0]) if self.times.size > 1 else 0


@dataclasses.dataclass(frozen=True)
class CsvInput:
    """A CSV of ``ts,value`` rows and the target the replay sizes for."""

    path: Path
    per_pod: float
    days: float = 3.0
    step: int | None = None
    """Grid the rows to this step (seconds); None: the CSV's own spacing."""
    lead_time: int = 600
    history: int = 14 * 86400
    """History each forecast reads (the configuration's ``history``)."""
    min_replicas: int = 1
    max_replicas: int = 200
    quantile: float = 0.9
    objective: Objective | None = None

    def problems(self) -> list[str]:
        found = []
        if not self.per_pod > 0 or not math.isfinite(self.per_pod):
            found.append(f"--per-pod must be a positive number, not {self.per_pod:g}")
        if not self.days > 0:
            found.append(f"--days must be positive, not {self.days:g}")
        if self.step is not None and not (
            60 <= self.step <= 3600 and self.step % SYNC_SECONDS == 0
        ):
            found.append(
                f"--step must be 1m..1h and a multiple of {SYNC_SECONDS}s, not {self.step}s"
            )
        if not 0 <= self.lead_time <= 86400:
            found.append(f"--lead-time must be 0..1d, not {self.lead_time}s")
        if not 3600 <= self.history <= 30 * 86400:
            found.append(f"--history must be 1h..30d, not {self.history}s")
        if self.min_replicas < 1:
            found.append(f"--min-replicas must be at least 1, not {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            found.append(
                f"--max-replicas {self.max_replicas} is below --min-replicas {self.min_replicas}"
            )
        if not 0.05 <= self.quantile <= 0.95:
            found.append(f"--quantile must be 0.05..0.95, not {self.quantile:g}")
        return found


@dataclasses.dataclass(frozen=True)
class PrometheusInput:
    """A configured target's traffic signal, read from Prometheus over ``begin .. end``."""

    config: Path
    target: str
    """``namespace/name`` of the target in the configuration."""
    prometheus: PrometheusSettings
    begin: int
    end: int

    def problems(self) -> list[str]:
        found = list(self.prometheus.problems())
        if self.target.count("/") != 1 or not all(self.target.split("/")):
            found.append(f"--target must be NAMESPACE/NAME, not {self.target!r}")
        if self.end <= self.begin:
            found.append("--to must be after --from")
        return found


@dataclasses.dataclass(frozen=True)
class ReplayOptions:
    """How the policies are replayed."""

    startup: int | None = None
    """Seconds from ordering a pod to its being ready; None: the target's lead time."""
    reactive_utilisation: float = 0.7
    safety_net: float | None = None
    """The reactive metric's utilisation as a second metric of the predictive HPA."""
    sweep: bool = False
    model: Path | None = None
    """A model folder; None: the shipped default."""

    def problems(self) -> list[str]:
        found = []
        if self.startup is not None and not 0 <= self.startup <= 86400:
            found.append(f"--startup must be 0..1d, not {self.startup}s")
        if not 0 < self.reactive_utilisation <= 1:
            found.append(
                f"--reactive-utilization must be in (0, 1], not {self.reactive_utilisation:g}"
            )
        if self.safety_net is not None and not 0 < self.safety_net <= 1:
            found.append(f"--safety-net must be in (0, 1], not {self.safety_net:g}")
        return found


def parse_time(text: str) -> int:
    """Unix seconds of an RFC 3339 time (UTC when it names no offset) or of unix seconds."""
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is neither RFC 3339 nor unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


def parse_objective(text: str) -> Objective:
    """``1%`` (or ``1``): at most that share of the time above capacity (0 .. 50 %)."""
    return Objective(_percentage(text, "1%"))


def parse_headroom(text: str) -> float:
    """``10%`` (or ``10``): the share of capacity an objective keeps free (0 .. 50 %)."""
    return _percentage(text, "10%")


def _percentage(text: str, example: str) -> float:
    try:
        share = float(text.strip().removesuffix("%")) / 100
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage such as {example}") from None
    if not 0 <= share <= 0.5:
        raise ValueError(f"{text!r} is outside 0%..50%")
    return share


def lead_in_steps(target: ForecastTarget) -> int:
    """Steps of history the setup reads before the first replayed step: the replay's warm-up,
    the tuning history (with an objective), the calibration errors and their lead window,
    and the history the earliest of those forecasts reads."""
    tuning = objective.TUNING_STEPS + objective.WARMUP_STEPS if target.objective else 0
    calibration = target.window_steps + objective.CALIBRATION_STEPS - 1
    return REPLAY_WARMUP + tuning + calibration + _history_steps(target)


def _history_steps(target: ForecastTarget) -> int:
    return max(1, target.history // target.step)


def load_input(
    given: CsvInput | PrometheusInput, source: HistorySource | None = None
) -> tuple[LoadSeries, ForecastTarget]:
    """The load and the target of a replay; `WhatIfError` for input it cannot use.

    `source` stands in for Prometheus (tests); by default a `PrometheusSource` is made from
    the input's settings and closed after.
    """
    if isinstance(given, CsvInput):
        series = read_csv(given.path, given.days, given.step)
        return series, csv_target(given, series.step)
    target = _configured_target(given.config, given.target)
    if source is not None:
        return _read_prometheus(source, target, given), target
    prometheus = PrometheusSource(given.prometheus)
    try:
        return _read_prometheus(prometheus, target, given), target
    finally:
        prometheus.close()


def csv_target(given: CsvInput, step: int) -> ForecastTarget:
    """The target a CSV replay sizes for: a capacity policy on its one signal."""
    return ForecastTarget(
        name="csv",
        namespace="replay",
        workload_kind="Deployment",
        workload_name="csv",
        traffic=(TrafficSignal(name="load", query=str(given.path)),),
        resource=None,
        replicas_query=None,
        capacity=CapacityPolicy(given.per_pod),
        step=step,
        history=given.history,
        lead_time=given.lead_time,
        min_replicas=given.min_replicas,
        max_replicas=given.max_replicas,
        quantile=given.quantile,
        result_configmap=False,
        objective=given.objective,
    )


def read_csv(path: Path, days: float, step: int | None) -> LoadSeries:
    """``ts,value`` rows (an optional header; an empty value or NaN is a gap) on a grid of
    `step` (the mean of the rows in each step), the last `days` to replay."""
    name = path.name
    stamps: list[float] = []
    values: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as file:
            for number, row in enumerate(csv.reader(file), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise WhatIfError(
                        f"{name} line {number}: expected ts,value, got {len(row)} fields"
                    )
                stamp, value = row[0].strip(), row[1].strip()
                try:
                    parsed_stamp = float(stamp)
                    parsed_value = float(value) if value else math.nan
                except ValueError:
                    if number == 1 and not stamps:
                        continue  # a header
                    raise WhatIfError(
                        f"{name} line {number}: {_short(stamp)},{_short(value)} is not "
                        "a number of seconds and a number"
                    ) from None
                if not math.isfinite(parsed_stamp):
                    raise WhatIfError(f"{name} line {number}: the timestamp must be finite")
                if not (math.isnan(parsed_value) or 0 <= parsed_value < math.inf):
                    raise WhatIfError(
                        f"{name} line {number}: a load must be finite and not negative, "
                        f"not {_short(value)}"
                    )
                stamps.append(parsed_stamp)
                values.append(parsed_value)
    except OSError as exc:
        raise WhatIfError(f"cannot read {name}: {exc.strerror or type(exc).__name__}") from exc
    except UnicodeDecodeError:
        raise WhatIfError(f"{name} is not UTF-8 text") from None
    except csv.Error as exc:
        raise WhatIfError(f"{name}: not CSV ({exc})") from None
    if not stamps:
        raise WhatIfError(f"{name} holds no ts,value rows")
    return _grid(name, np.array(stamps), np.array(values), days, step)


def _grid(
    name: str, stamps: np.ndarray, values: np.ndarray, days: float, step: int | None
) -> LoadSeries:
    if np.any(np.diff(stamps) <= 0):
        row = int(np.flatnonzero(np.diff(stamps) <= 0)[0]) + 2
        raise WhatIfError(f"{name}: timestamps must increase (row {row} of the data does not)")
    if stamps[-1] > 1e11:
        raise WhatIfError(f"{name}: timestamps look like milliseconds; give unix seconds")
    if step is None:
        if stamps.size < 2:
            raise WhatIfError(f"{name} holds one row: too few to replay")
        spacing = float(np.median(np.diff(stamps)))
        step = int(round(spacing))
        if not (60 <= step <= 3600 and step % SYNC_SECONDS == 0):
            raise WhatIfError(
                f"{name}: rows are {spacing:g}s apart; give --step (1m..1h, a multiple of "
                f"{SYNC_SECONDS}s)"
            )
    first = int(stamps[0] // step)
    index = (stamps // step).astype(np.int64) - first
    count = int(index[-1]) + 1
    if count > MAX_CSV_STEPS:
        raise WhatIfError(f"{name} spans {count} steps of {step}s: at most {MAX_CSV_STEPS}")
    observed = ~np.isnan(values)
    sums = np.bincount(index[observed], weights=values[observed], minlength=count)
    rows = np.bincount(index[observed], minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        load = np.where(rows > 0, sums / np.maximum(rows, 1), np.nan)
    times = (first + np.arange(count, dtype=np.int64)) * step
    replayed = round(days * 86400 / step)
    needed = replayed + REPLAY_WARMUP + 1
    if count < needed:
        raise WhatIfError(
            f"{name} holds {count} steps of {_duration(step)}; replaying the last "
            f"{days:g} day(s) ({replayed} steps) needs at least {needed} (a warm-up and a "
            "step of history before them)"
        )
    start = count - replayed
    if not np.any(np.isfinite(load[start:])):
        raise WhatIfError(f"{name}: no load in the replayed range")
    return LoadSeries(times, load, start, f"{name} ({stamps.size} rows)", _gap_notes(load, start))


def _configured_target(path: Path, wanted: str) -> ForecastTarget:
    config = _config(path)
    namespace, _, name = wanted.partition("/")
    target = next((t for t in config.targets if (t.namespace, t.name) == (namespace, name)), None)
    if target is None:
        known = ", ".join(f"{t.namespace}/{t.name}" for t in config.targets) or "none"
        raise WhatIfError(f"{path.name} has no target {wanted} (targets: {known})")
    if target.capacity is None:
        raise WhatIfError(
            f"target {wanted} has a resource policy; the replay needs capacity.perPod "
            "(what one pod serves of its traffic signal)"
        )
    if len(target.traffic) != 1:
        raise WhatIfError(f"target {wanted} has {len(target.traffic)} traffic signals, not 1")
    return target


def _config(path: Path) -> AdapterConfig:
    try:
        return load_config(read_document(path, MAX_DOCUMENT_BYTES), str(path))
    except InvalidConfiguration as exc:
        raise WhatIfError(f"{exc.source}: {'; '.join(exc.problems)}") from None


def _read_prometheus(
    source: HistorySource, target: ForecastTarget, given: PrometheusInput
) -> LoadSeries:
    step = target.step
    first = -(-given.begin // step) * step
    last = given.end // step * step
    if last < first:
        raise WhatIfError(f"--from .. --to holds no step of the target's {_duration(step)} grid")
    begin = first - lead_in_steps(target) * step
    signal = target.traffic[0]
    query = _signal_query(source, given.config, target, signal)
    try:
        answers = source.query_range(query, begin, last, step)
    except QueryFailed as exc:
        raise WhatIfError(f"cannot read {signal.name}: {exc}") from None
    except SourceError as exc:
        raise WhatIfError(f"cannot read {signal.name}: {exc}", code=1) from None
    history = History(step, (last - begin) // step + 1)
    history.merge(begin, last, answers)
    values = history.values.copy()
    if signal.counter:
        values = counter_rate(values, step)
    start = (first - begin) // step
    if not np.any(np.isfinite(values[start:])):
        raise WhatIfError(
            f"Prometheus holds no {signal.name} between --from and --to for target "
            f"{target.namespace}/{target.name}"
        )
    notes = list(_gap_notes(values, start))
    if history.refused:
        notes.append(f"samples no load can have were left out as gaps ({history.refused})")
    before = np.flatnonzero(np.isfinite(values[:start]))
    held = start - int(before[0]) if before.size else 0
    if held < lead_in_steps(target):
        notes.append(
            f"Prometheus holds {held} of the {lead_in_steps(target)} steps of history the "
            "setup reads before the range"
        )
    where = f"{signal.name} of {target.namespace}/{target.name} from Prometheus"
    return LoadSeries(history.timestamps, values, start, where, tuple(notes))


def _signal_query(
    source: HistorySource, path: Path, target: ForecastTarget, signal: TrafficSignal
) -> str:
    """The signal's PromQL: its own, or the ``metricsQuery`` of the first rule whose series
    provide its metric (as the refresher resolves it)."""
    if signal.query is not None:
        return signal.query
    config = _config(path)
    metric = signal.metric or ""
    for rule in config.rules:
        try:
            names = source.series_names(rules_module.series_selector(rule))
        except SourceError as exc:
            message = f"cannot discover series for {metric}: {exc}"
            raise WhatIfError(message, code=1) from None
        series = rules_module.metric_names(rule, names).get(metric)
        if series is not None:
            return rules_module.render_query(rule, series, target.namespace, dict(signal.selector))
    raise WhatIfError(f"no rule defines the metric {metric} (with the series Prometheus holds)")


def _gap_notes(load: np.ndarray, start: int) -> tuple[str, ...]:
    gaps = int(np.sum(np.isnan(load[start:])))
    if not gaps:
        return ()
    return (
        f"{gaps} replayed step(s) have no load: each is replayed with the load before it "
        "(the forecasts see the gap)",
    )


# --- replay -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicyRun:
    """One policy replayed over the range."""

    name: str
    scores: Scores
    ready: np.ndarray
    """Ready pods per replayed step (the mean over its syncs)."""
    short: np.ndarray
    """Per replayed step: the load exceeded the ready capacity at one of its syncs at least."""
    served: np.ndarray | None = None
    """The predictive count served per replayed step (None for the others)."""


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The setting served from one step on: the manual one, or one tuning's."""

    begin: int
    """Index of the first step it served."""
    time: int
    """Unix seconds of that step."""
    choice: Choice | None
    """The tuning's outcome (None: no objective, the manual quantile)."""
    setting: Setting
    """What was served: the choice, or the manual quantile while there is none."""


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """What every predictive replay of a series shares: the filled load, the bounds and
    the model's own quantile peaks over the replayed steps (warm-up included)."""

    filled: np.ndarray
    first: int
    bounds: Bounds
    """The calibrated bounds of the replayed steps, from `first` on."""
    median_peaks: np.ndarray
    """Per step of the series, the median's maximum over the lead window from it (NaN where
    no forecast was needed)."""
    peaks: dict[float, np.ndarray]
    """Per quantile, the model's own quantile maximised over the window, per replayed step."""


@dataclasses.dataclass(frozen=True)
class Report:
    """A replay's outcome."""

    series: LoadSeries
    target: ForecastTarget
    options: ReplayOptions
    startup: int
    """Seconds from ordering a pod to its being ready, as replayed."""
    reactive: PolicyRun
    predictive: PolicyRun
    oracle: PolicyRun
    tunings: tuple[Tuning, ...]
    calibrated: float
    """Share of the replayed steps whose bound (at the first setting's quantile) was
    calibrated (else the model's own quantile served)."""
    model_share: float
    """Share of the calibrated bounds at that quantile that came from the model (else the
    last value)."""
    prepared: _Prepared = dataclasses.field(repr=False)
    """The forecasts and bounds the replay was made from (a sweep reuses them)."""

    @property
    def times(self) -> np.ndarray:
        return self.series.times[self.series.start :]

    @property
    def load(self) -> np.ndarray:
        return objective.fill_gaps(self.series.load)[self.series.start :]

    @property
    def policies(self) -> tuple[PolicyRun, PolicyRun, PolicyRun]:
        return self.reactive, self.predictive, self.oracle


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    family: str
    knobs: str
    scores: Scores
    cost: float
    """Pod-hours over those of the reactive HPA at `BASELINE`."""
    frontier: bool = False
    """No other point is as cheap and as often above capacity, and better in one."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    points: tuple[SweepPoint, ...]
    oracle: SweepPoint
    safety_net: float | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    report: Report
    sweep: Sweep | None
    text: str


def run_replay(
    given: CsvInput | PrometheusInput,
    options: ReplayOptions,
    *,
    source: HistorySource | None = None,
    model: backfill.BatchForecaster | None = None,
) -> Outcome:
    """Read the input, load the model, replay (and sweep); the report and its text."""
    series, target = load_input(given, source)
    if model is None:
        try:
            model = forecaster.load_forecaster(options.model)
        except forecaster.ForecasterError as exc:
            raise WhatIfError(f"cannot load the model: {exc}") from None
    report = replay(series, target, model, options)
    swept = sweep(report) if options.sweep else None
    return Outcome(report, swept, render(report, swept))


def replay(
    series: LoadSeries,
    target: ForecastTarget,
    model: backfill.BatchForecaster,
    options: ReplayOptions,
) -> Report:
    """Replay the three policies over the series' replayed range."""
    assert target.capacity is not None
    if series.step % SYNC_SECONDS:
        raise WhatIfError(
            f"the step {series.step}s is not a multiple of the HPA's {SYNC_SECONDS}s sync period"
        )
    startup = target.lead_time if options.startup is None else options.startup
    prepared = _prepare(series, target, model)
    per_pod = target.capacity.per_pod
    hpa = _autoscaler(target)
    step = series.step
    replayed = prepared.filled[prepared.first :]
    utilisation = options.reactive_utilisation

    reactive = _replay(
        f"reactive HPA (u={utilisation:g})",
        [reactive_metric(replayed, per_pod * utilisation, step)],
        hpa,
        step,
        prepared,
        per_pod,
        startup,
    )

    tunings = _schedule(series, target, prepared)
    served = _served(prepared, target, tunings)
    shares: tuple[float, ...] = ()
    if target.objective is None:
        name = f"predictive ({tunings[0].setting})"
    else:
        name = f"predictive (tuned for {100 * target.objective.max_time_above_capacity:g}%"
        if target.objective.headroom:
            name += f" above {100 * target.objective.capacity_share:g}% of capacity"
            shares = (target.objective.capacity_share,)
        name += ")"
    metrics = [ExternalMetric(served, 1.0)]
    if options.safety_net is not None:
        name += f" + reactive u={options.safety_net:g}"
        metrics.append(reactive_metric(replayed, per_pod * options.safety_net, step))
    predictive = _replay(
        name, metrics, hpa, step, prepared, per_pod, startup, served[REPLAY_WARMUP:], shares
    )

    need = _oracle_counts(prepared, target, per_pod * utilisation, startup, step)
    oracle = _replay(
        f"oracle (u={utilisation:g})",
        [ExternalMetric(need, 1.0, tolerance=0.0)],
        hpa,
        step,
        prepared,
        per_pod,
        startup,
    )

    quantile = tunings[0].setting.quantile
    known = np.isfinite(_bounds_at(prepared, series.start, series.load.size).at(quantile))
    share = prepared.bounds.model_share[prepared.bounds.quantiles.index(quantile)]
    return Report(
        series=series,
        target=target,
        options=options,
        startup=startup,
        reactive=reactive,
        predictive=predictive,
        oracle=oracle,
        tunings=tuple(tunings),
        calibrated=float(np.mean(known)),
        model_share=float(share),
        prepared=prepared,
    )


def _prepare(
    series: LoadSeries, target: ForecastTarget, model: backfill.BatchForecaster
) -> _Prepared:
    """Forecasts at every origin the replay and its tunings need, as the refresher makes
    them, and the calibrated bounds of the replayed steps.

    The adapter calibrates a bound on the errors within the history window it holds: a
    history shorter than the calibration (and its lead window) calibrates on fewer errors, so
    here too. (Its last-value predictor has one error fewer there; that one is kept.)
    """
    load, times = series.load, series.times
    size = load.size
    first = series.start - REPLAY_WARMUP
    window = target.window_steps
    history = _history_steps(target)
    tuning = objective.TUNING_STEPS + objective.WARMUP_STEPS if target.objective else 0
    origins = np.arange(max(1, first - tuning - window - objective.CALIBRATION_STEPS + 1), size)
    quantiles = tuple(sorted({*objective.QUANTILES, target.quantile}))
    try:
        peaks = np.full(size, np.nan)
        peaks[origins] = backfill.median_peaks(model, times, load, origins, history, window)
        ahead = backfill.forecast_origins(
            model, times, load, np.arange(first, size), history, window, quantiles
        )
    except forecaster.ForecasterError as exc:
        raise WhatIfError(f"the model cannot forecast this series: {exc}") from None
    except ValueError as exc:  # a window past the model's horizon
        raise WhatIfError(f"the model cannot forecast the lead window: {exc}") from None
    calibration = min(objective.CALIBRATION_STEPS, max(1, history - window + 1))
    bounds = objective.lead_window_bounds(
        load, peaks, np.arange(first, size), window, quantiles, calibration
    )
    return _Prepared(
        filled=objective.fill_gaps(load),
        first=first,
        bounds=bounds,
        median_peaks=peaks,
        peaks={q: ahead[i].max(axis=1) for i, q in enumerate(quantiles)},
    )


def _bounds_at(prepared: _Prepared, begin: int, end: int) -> Bounds:
    """The bounds of the replayed steps `begin` .. `end` - 1."""
    values = prepared.bounds.values[:, begin - prepared.first : end - prepared.first]
    return dataclasses.replace(prepared.bounds, values=values)


def _schedule(series: LoadSeries, target: ForecastTarget, prepared: _Prepared) -> list[Tuning]:
    """The setting of each part of the replay: the manual one throughout, or for an objective
    a tuning at the first replayed step and every `RETUNE_SECONDS` after.

    Each tuning is the adapter's: on the history window it holds then (the `history` before
    that step, never the step itself) and the median peaks logged for it, the last
    `TUNING_STEPS` (with the warm-up) replayed from the bounds each had, for its lead time
    (whatever start-up the replay assumes), with `tuning_autoscaler`.
    """
    manual = objective.manual_setting(target.quantile)
    first, size, step = prepared.first, series.load.size, series.step
    if target.objective is None:
        return [Tuning(first, int(series.times[first]), None, manual)]
    every = max(1, objective.RETUNE_SECONDS // step)
    history = _history_steps(target)
    tunings = []
    for at in range(first, size, every):
        low = max(0, at - history)
        choice = planning.tune(target, series.load[low:at], prepared.median_peaks[low:at])
        tunings.append(Tuning(at, int(series.times[at]), choice, choice.setting or manual))
    return tunings


def _served(prepared: _Prepared, target: ForecastTarget, tunings: Sequence[Tuning]) -> np.ndarray:
    """The count served at each replayed step (warm-up included) under the schedule."""
    first, size = prepared.first, prepared.filled.size
    served = np.empty(size - first)
    for index, tuning in enumerate(tunings):
        end = tunings[index + 1].begin if index + 1 < len(tunings) else size
        served[tuning.begin - first : end - first] = _counts(
            prepared, target, tuning.setting, tuning.begin, end
        )
    return served


def _counts(
    prepared: _Prepared, target: ForecastTarget, setting: Setting, begin: int, end: int
) -> np.ndarray:
    """`objective.counts` over steps `begin` .. `end` - 1, as the adapter serves them."""
    assert target.capacity is not None
    first = prepared.first
    return objective.counts(
        setting,
        _bounds_at(prepared, begin, end),
        prepared.filled[begin - 1 : end - 1],
        target.capacity.per_pod,
        target.min_replicas,
        target.max_replicas,
        fallback=prepared.peaks[setting.quantile][begin - first : end - first],
    )


def _oracle_counts(
    prepared: _Prepared, target: ForecastTarget, per_pod: float, startup: int, step: int
) -> np.ndarray:
    """At each replayed step, the pods the load over it and the next ``ceil(startup / step)``
    steps needs at `per_pod` (the future, known)."""
    ahead = -(-startup // step)
    need = np.ceil(prepared.filled / per_pod - 1e-9)
    padded = np.concatenate([need, np.repeat(need[-1:], ahead)])
    cover = sliding_window_view(padded, ahead + 1).max(axis=1)[prepared.first :]
    return np.asarray(np.clip(cover, target.min_replicas, target.max_replicas), dtype=np.float64)


def _replay(
    name: str,
    metrics: Sequence[ExternalMetric],
    hpa: Autoscaler,
    step: int,
    prepared: _Prepared,
    per_pod: float,
    startup: int,
    served: np.ndarray | None = None,
    shares: Sequence[float] = (),
) -> PolicyRun:
    """Simulate the HPA over the replayed steps from the count a reactive HPA at `BASELINE`
    holds for the step before them; score the steps after the warm-up (and the time above
    `shares` of the capacity)."""
    first = prepared.first
    wanted = math.ceil(max(float(prepared.filled[first - 1]), 0.0) / (per_pod * BASELINE) - 1e-9)
    initial = min(max(wanted, hpa.min_replicas), hpa.max_replicas)
    trace = simulate(metrics, hpa, step, startup, initial_replicas=initial)
    syncs = trace.syncs_per_step
    span = trace.after(REPLAY_WARMUP)
    load = prepared.filled[first + REPLAY_WARMUP :]
    short = np.repeat(load, syncs) > span.ready * per_pod
    return PolicyRun(
        name,
        score(span, load, per_pod, shares),
        span.per_step().ready,
        np.asarray(short.reshape(-1, syncs).any(axis=1)),
        served,
    )


# --- sweep --------------------------------------------------------------------------------


def sweep(report: Report) -> Sweep:
    """The predictive setup under every setting of `objective.SETTINGS` and the reactive HPA
    at `REACTIVE_UTILISATIONS`, costed against the reactive HPA at `BASELINE`."""
    prepared, target, options = report.prepared, report.target, report.options
    assert target.capacity is not None
    per_pod = target.capacity.per_pod
    step = report.series.step
    hpa = _autoscaler(target)
    replayed = prepared.filled[prepared.first :]
    runs: list[tuple[str, str, PolicyRun]] = []
    for utilisation in REACTIVE_UTILISATIONS:
        metric = reactive_metric(replayed, per_pod * utilisation, step)
        run_ = _replay("", [metric], hpa, step, prepared, per_pod, report.startup)
        runs.append(("reactive HPA", f"u={utilisation:g}", run_))
    extra = []
    if options.safety_net is not None:
        extra.append(reactive_metric(replayed, per_pod * options.safety_net, step))
    size = prepared.filled.size
    for setting in objective.SETTINGS:
        served = _counts(prepared, target, setting, prepared.first, size)
        metrics = [ExternalMetric(served, 1.0), *extra]
        run_ = _replay("", metrics, hpa, step, prepared, per_pod, report.startup)
        runs.append(("predictive", str(setting), run_))
    runs.append(("configured", report.predictive.name, report.predictive))
    baseline = runs[REACTIVE_UTILISATIONS.index(BASELINE)][2].scores.pod_hours
    points = [
        SweepPoint(family, knobs, run_.scores, _ratio(run_.scores.pod_hours, baseline))
        for family, knobs, run_ in runs
    ]
    marked = tuple(
        dataclasses.replace(point, frontier=not _dominated(point, points)) for point in points
    )
    oracle = report.oracle
    oracle_point = SweepPoint(
        "oracle", oracle.name, oracle.scores, _ratio(oracle.scores.pod_hours, baseline)
    )
    return Sweep(marked, oracle_point, options.safety_net)


def _dominated(point: SweepPoint, points: Sequence[SweepPoint]) -> bool:
    above, cost = point.scores.time_above_capacity, point.cost
    return any(
        other.cost <= cost
        and other.scores.time_above_capacity <= above
        and (other.cost < cost or other.scores.time_above_capacity < above)
        for other in points
    )


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.nan


def _autoscaler(target: ForecastTarget) -> Autoscaler:
    """The HPA every policy is replayed through: the controller's defaults, the target's
    bounds."""
    return Autoscaler(max_replicas=target.max_replicas, min_replicas=target.min_replicas)


# --- text ---------------------------------------------------------------------------------


def render(report: Report, swept: Sweep | None = None) -> str:
    """The report as text: what was replayed, the table of policies, the setting(s) of the
    predictive setup, notes; and the frontier of a sweep."""
    series, target = report.series, report.target
    assert target.capacity is not None
    step = series.step
    times = report.times
    window = target.window_steps
    hpa = _autoscaler(target)
    lines = [
        f"Replay of {series.source}: {times.size} steps of {_duration(step)}, "
        f"{_when(int(times[0]))} .. {_when(int(times[-1]) + step)} UTC, after "
        f"{series.start} steps of history",
        f"Target: {target.capacity.per_pod:g} per pod at full use; lead time "
        f"{_duration(target.lead_time)} (lead window {window} steps); pods ready "
        f"{_duration(report.startup)} after being ordered; replicas "
        f"{target.min_replicas}..{target.max_replicas}",
        f"HPA: autoscaling/v2 defaults ({hpa.sync_period_seconds}s sync, "
        f"{100 * hpa.tolerance:g}% tolerance, default behaviour); {REPLAY_WARMUP} warm-up "
        "steps before the range are not scored",
        "",
    ]
    lines += _policy_table(report)
    lines.append("")
    lines += _setting_lines(report)
    for note in series.notes:
        lines.append(f"Note: {note}")
    if swept is not None:
        lines.append("")
        lines += _frontier_lines(swept)
    return "\n".join(lines) + "\n"


_COLUMNS = (
    ("above capacity", 14),
    ("unserved", 9),
    ("pod-hours", 10),
    ("vs reactive", 11),
    ("vs oracle", 9),
    ("scale events", 12),
)


def _policy_table(report: Report) -> list[str]:
    width = max(len(run_.name) for run_ in report.policies)
    header = f"{'policy':{width}}  " + "  ".join(f"{name:>{size}}" for name, size in _COLUMNS)
    rows = [header]
    reactive = report.reactive.scores.pod_hours
    oracle = report.oracle.scores.pod_hours
    for run_ in report.policies:
        scores = run_.scores
        cells = (
            f"{100 * scores.time_above_capacity:.3f}%",
            f"{100 * scores.unserved_share:.3f}%",
            f"{scores.pod_hours:.1f}",
            f"{_ratio(scores.pod_hours, reactive):.3f}",
            f"{_ratio(scores.pod_hours, oracle):.3f}",
            f"{scores.scale_events}",
        )
        rows.append(
            f"{run_.name:{width}}  "
            + "  ".join(f"{cell:>{size}}" for cell, (_, size) in zip(cells, _COLUMNS, strict=True))
        )
    return rows


def _setting_lines(report: Report) -> list[str]:
    target = report.target
    first = report.tunings[0].setting.quantile
    coverage = (
        f"calibrated bounds (q={first:g}) on {100 * report.calibrated:.0f}% of the replayed "
        f"steps, from the model on {100 * report.model_share:.0f}% of those (else the last "
        "value); the model's own quantile on the rest"
    )
    if target.objective is None:
        return [
            f"Predictive setting (the manual quantile): {report.tunings[0].setting}; {coverage}"
        ]
    every = _duration(objective.RETUNE_SECONDS)
    lines = [
        f"Objective: {target.objective}. Tuned as the replay starts (its warm-up included) and "
        f"every {every} after, each time on the {objective.TUNING_STEPS} steps before "
        f"({len(report.tunings)} tunings):"
    ]
    unmet = 0
    for tuning in report.tunings:
        assert tuning.choice is not None
        unmet += tuning.choice.setting is not None and not tuning.choice.met
        lines.append(f"  {_when(tuning.time)}  {tuning.choice.reason}")
    if unmet:
        lines.append(
            f"The objective cannot be met at {unmet} of {len(report.tunings)} tunings: the "
            "closest setting was served."
        )
    share = target.objective.capacity_share
    above = report.predictive.scores.time_above(share)
    verdict = "met" if above <= target.objective.max_time_above_capacity + 1e-12 else "NOT met"
    where = "capacity" if share == 1 else f"{100 * share:g}% of capacity"
    lines.append(
        f"Over the replay the predictive setup was above {where} {100 * above:.3f}% of the "
        f"time: the objective was {verdict}."
    )
    lines.append(f"({coverage[0].upper()}{coverage[1:]}.)")
    return lines


def _frontier_lines(swept: Sweep) -> list[str]:
    net = (
        ""
        if swept.safety_net is None
        else f"; each predictive setting with the reactive metric at u={swept.safety_net:g}"
    )
    lines = [
        f"Frontier: cost (pod-hours over the reactive HPA at u={BASELINE:g}) against time above "
        f"capacity; * on the frontier (no other point as cheap and as rarely short){net}"
    ]
    points = sorted(swept.points, key=lambda p: (p.cost, p.scores.time_above_capacity))
    family = max(len(p.family) for p in [*points, swept.oracle])
    knobs = max(len(p.knobs) for p in [*points, swept.oracle])
    lines.append(
        f"  {'policy':{family}}  {'knobs':{knobs}}  {'cost':>6}  {'above capacity':>14}  "
        f"{'unserved':>9}"
    )
    for point in [*points, swept.oracle]:
        mark = "*" if point.frontier else " "
        lines.append(
            f"{mark} {point.family:{family}}  {point.knobs:{knobs}}  {point.cost:6.3f}  "
            f"{100 * point.scores.time_above_capacity:13.3f}%  "
            f"{100 * point.scores.unserved_share:8.3f}%"
        )
    return lines


def _when(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _short(text: str) -> str:
    return shorten(repr(text), 40)
