"""Scaling benchmark: the replay protocol of ``scaling-replay.md`` on the dev traces.

Role: replay every dev trace through the simulated HPA (`adapter.simulator`) for each policy
family swept over its knobs, at start-up delays of S = 1 and S = 2 steps, and print, per S, the
pooled share of steps above capacity, the unserved share of load and the pod-hours against the
reactive HPA at u = 0.7, then the cost/shortfall frontier (the lowest shortfall each family
reaches within a mean pod-hour budget).

    python -m bench.scaling --data ../shared/data

Per series (5-minute grid, gaps carried forward; series shorter than 3 days of span plus 1 day
of history are skipped, as the forecast benchmark skips them):

- the evaluation span is the last 3 days; capacity of one pod c = p99(load over the span) / 20;
  min 1, max 200 replicas; pods ordered at step t are ready at t + S;
- every replay starts `WARMUP` steps before the span (from the count the reactive HPA at 0.7
  would hold) and only the span is scored, with `adapter.simulator.score`;
- families: the reactive HPA (u in 0.7 .. 0.3); last value plus empirical error quantiles
  (see `lead_window_errors`), combined as max(reactive at u_r, its own count); the project's
  forecaster (`ForecasterFamily`: `Forecaster.forecast_batch`, the refresher's entry, over the
  14 days before each step, in batches), combined the same way; the oracle.

`--series N` replays N series spread evenly over the set, `--families` a subset of the families.

Extension point: a policy that sizes from a forecast is a `Family`, a function from a prepared
series and S to `Candidate`s; `Candidate.counts` is the per-step "forecast count", made at each
step from data before it (see `forecast_counts` to turn a forecast load into counts).

What it must not do: look at any step's load when deciding that step or later ones (every
count at step t reads load up to t - 1 only; the oracle alone is allowed the future), tune
anything to individual series, or write files.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from adapter import backfill, objective
from adapter.simulator import (
    ExternalMetric,
    Scores,
    protocol_autoscaler,
    reactive_metric,
    score,
    simulate,
)
from forecaster import backtest
from forecaster.predictor import load_forecaster
from forecaster.series import Series, read_folder

STEP = backtest.STEP
DAY = backtest.DAY
SPAN = backtest.EVALUATION_DAYS * DAY
HISTORY = backtest.CONTEXT_DAYS * DAY
"""How far back a policy may read before a step (14 days)."""
WARMUP = 12
"""Steps replayed before the span so that the HPA's state is the policy's own when it starts."""
PODS_AT_P99 = 20
MAX_REPLICAS = 200
MIN_REPLICAS = 1
STARTUPS = (1, 2)
BASELINE_UTILISATION = 0.7
REACTIVE_UTILISATIONS = (0.7, 0.6, 0.5, 0.4, 0.3)
QUANTILES = (0.5, 0.7, 0.8, 0.9, 0.95)
FORECAST_UTILISATIONS = (1.0, 0.85, 0.7)
ORACLE_UTILISATIONS = (0.7, 1.0)
BUDGETS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)


@dataclasses.dataclass(frozen=True)
class Replay:
    """One series made ready for the protocol."""

    name: str
    load: np.ndarray
    """The whole series on the 5-minute grid, gaps carried forward."""
    capacity: float
    """c: what one pod serves at 100 %."""
    first_time: int = 0
    """Unix seconds of `load[0]` (the forecaster reads the time of day and week)."""

    def times(self, begin: int, end: int) -> np.ndarray:
        """Timestamps of the steps `begin` .. `end` - 1."""
        return self.first_time + STEP * np.arange(begin, end, dtype=np.int64)

    @property
    def start(self) -> int:
        """Index of the first step of the evaluation span."""
        return len(self.load) - SPAN

    @property
    def first(self) -> int:
        """Index of the first replayed step (the warm-up's first)."""
        return self.start - WARMUP


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of a family's sweep: what the HPA is given over the replayed steps."""

    family: str
    knobs: str
    reactive_utilisation: float | None
    """The reactive metric's target utilisation; None: no reactive metric."""
    counts: np.ndarray | None = None
    """The policy's own replica count per replayed step, served exactly (no tolerance)."""


Family = Callable[[Replay, int], Iterable[Candidate]]
"""A policy family: (series, start-up steps S) -> the points of its sweep."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One candidate's scores on one series."""

    family: str
    knobs: str
    startup: int
    scores: Scores


def prepare(traces: Sequence[Series]) -> list[Replay]:
    """The traces that fit the protocol, with their pod capacity; flat-zero spans are skipped."""
    replays = []
    for trace in backtest.prepare(traces):
        if not np.any(~np.isnan(trace.values)):
            continue
        load = objective.fill_gaps(trace.values)
        capacity = float(np.percentile(load[-SPAN:], 99)) / PODS_AT_P99
        if capacity > 0:
            replays.append(Replay(trace.name, load, capacity, int(trace.timestamps[0])))
    return replays


def initial_replicas(replay: Replay) -> int:
    """The count the reactive HPA at 0.7 would hold for the load just before the replay."""
    wanted = math.ceil(replay.load[replay.first - 1] / (replay.capacity * BASELINE_UTILISATION))
    return min(max(wanted, MIN_REPLICAS), MAX_REPLICAS)


def replay_candidate(replay: Replay, candidate: Candidate, startup: int) -> Scores:
    """Replay one candidate through the protocol's HPA; the scores of the span alone."""
    window = replay.load[replay.first :]
    metrics = []
    if candidate.reactive_utilisation is not None:
        per_pod = replay.capacity * candidate.reactive_utilisation
        metrics.append(reactive_metric(window, per_pod, STEP))
    if candidate.counts is not None:
        if candidate.counts.shape != window.shape:
            raise ValueError(f"{candidate.counts.size} counts for {window.size} replayed steps")
        metrics.append(ExternalMetric(candidate.counts.astype(np.float64), 1.0, tolerance=0.0))
    trace = simulate(
        metrics,
        protocol_autoscaler(STEP, MAX_REPLICAS, MIN_REPLICAS),
        STEP,
        startup_seconds=startup * STEP,
        initial_replicas=initial_replicas(replay),
    )
    return score(trace.after(WARMUP), replay.load[replay.start :], replay.capacity)


def forecast_counts(forecast: np.ndarray, capacity: float, utilisation: float) -> np.ndarray:
    """Replica counts that serve a forecast load at `utilisation` of each pod (NaN stays NaN)."""
    counts = np.ceil(forecast / (capacity * utilisation))
    return np.where(np.isnan(counts), np.nan, np.clip(counts, 0, MAX_REPLICAS))


def lead_window_errors(load: np.ndarray, startup: int) -> np.ndarray:
    """Error of a last-value forecast of the lead window, per step (NaN where undefined).

    ``errors[j] = max(load[j .. j + S]) - load[j - 1]``: the most the load over the steps a count
    ordered at j must cover (the current one, which a scale-down leaves at once, up to the one
    its new pods are ready for) exceeds the last value seen at j. A difference, not a ratio: it
    stays defined where the load is near zero. It is known from step j + S + 1 on.
    """
    size = len(load)
    errors = np.full(size, np.nan)
    if size > startup + 1:
        ahead = sliding_window_view(load, startup + 1).max(axis=1)
        errors[1 : size - startup] = ahead[1:] - load[: size - startup - 1]
    return errors


def error_quantiles(
    load: np.ndarray,
    startup: int,
    steps: np.ndarray,
    quantiles: Sequence[float],
    history: int = HISTORY,
) -> np.ndarray:
    """Per step t in `steps` and per quantile: the quantile of the errors known before t.

    Known before t, within the `history` steps before it: `lead_window_errors` j with
    ``t - history <= j - 1`` and ``j + S <= t - 1``. Linear interpolation, as `numpy.quantile`.
    Shape (len(quantiles), len(steps)); NaN where no error is known yet.
    """
    width = history - 1 - startup
    padded = np.concatenate([np.full(history, np.nan), lead_window_errors(load, startup)])
    # Row t covers errors t - history + 1 .. t - 1 - S, at padded t + 1 .. t + history - S - 1.
    rows = np.sort(sliding_window_view(padded, width)[np.asarray(steps) + 1], axis=1)
    known = np.sum(~np.isnan(rows), axis=1)
    last = np.maximum(known - 1, 0)
    out = np.empty((len(quantiles), len(steps)))
    line = np.arange(len(steps))
    for row, quantile in enumerate(quantiles):
        position = quantile * last
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, last)
        below, above = rows[line, low], rows[line, high]
        out[row] = np.where(known > 0, below + (position - low) * (above - below), np.nan)
    return out


def reactive_family(replay: Replay, startup: int) -> Iterable[Candidate]:
    """The reactive HPA alone, swept over its target utilisation."""
    del replay, startup
    for utilisation in REACTIVE_UTILISATIONS:
        yield Candidate("reactive HPA", f"u={utilisation:g}", utilisation)


def last_value_family(replay: Replay, startup: int) -> Iterable[Candidate]:
    """Last value + the q-quantile of its recent lead-window errors, with the reactive metric."""
    steps = np.arange(replay.first, len(replay.load))
    margins = error_quantiles(replay.load, startup, steps, QUANTILES)
    last = replay.load[steps - 1]
    for quantile, margin in zip(QUANTILES, margins, strict=True):
        for utilisation in FORECAST_UTILISATIONS:
            counts = forecast_counts(last + margin, replay.capacity, utilisation)
            knobs = f"q={quantile:g} u_f=u_r={utilisation:g}"
            yield Candidate("last value + quantiles", knobs, utilisation, counts)


BatchForecaster = backfill.BatchForecaster
FORECAST_CHUNK = backfill.CHUNK


class ForecasterFamily:
    """The project's forecaster, through `Forecaster.forecast_batch` as the refresher calls it.

    At every replayed step t it forecasts from the `HISTORY` steps before t (up to t - 1) the
    steps t .. t + S; its count is the q-quantile forecast's maximum over them sized at u_f,
    combined with the reactive metric at u_r = u_f (the knobs of `last_value_family`). The
    forecasts of a series are made once, for the longest lead window of `STARTUPS`, and reused
    for every knob and start-up delay (the model forecasts each step the same whatever the
    horizon asked for).
    """

    name = "forecaster"

    def __init__(
        self,
        load: Callable[[], BatchForecaster] = load_forecaster,
        chunk: int = FORECAST_CHUNK,
        longest: int = max(STARTUPS),
    ) -> None:
        self._load = load
        self._model: BatchForecaster | None = None
        self._chunk = chunk
        self._longest = longest
        self._cache: tuple[str, np.ndarray] | None = None
        self._held_out: Path | None = None
        self._models: dict[str, BatchForecaster] = {}

    def use(self, load: Callable[[], BatchForecaster]) -> None:
        """Forecast with the model `load` returns from now on."""
        self._load, self._model, self._cache = load, None, None

    def leave_one_out(self, folder: Path) -> None:
        """Forecast each series with ``folder/<its source>``: a model trained without the
        series' source (the top folder of its name)."""
        self._held_out, self._models, self._cache = folder, {}, None

    def __getstate__(self) -> dict[str, object]:
        """Sent to a worker process without its model or cache (each worker loads its own)."""
        return {**self.__dict__, "_model": None, "_cache": None, "_models": {}}

    def __call__(self, replay: Replay, startup: int) -> Iterable[Candidate]:
        if startup > self._longest:
            raise ValueError(f"forecasts are made for S up to {self._longest}, not {startup}")
        forecasts = self.forecasts(replay)
        ahead = forecasts[:, :, : startup + 1].max(axis=2)
        for quantile, peak in zip(QUANTILES, ahead, strict=True):
            for utilisation in FORECAST_UTILISATIONS:
                counts = forecast_counts(peak, replay.capacity, utilisation)
                knobs = f"q={quantile:g} u_f=u_r={utilisation:g}"
                yield Candidate(self.name, knobs, utilisation, counts)

    def forecasts(self, replay: Replay) -> np.ndarray:
        """(quantile, replayed step, lead step) forecasts of one series."""
        return self.all_forecasts(replay)[:, replay.first - first_origin(replay) :]

    def all_forecasts(self, replay: Replay) -> np.ndarray:
        """(quantile, step, lead step) forecasts at every step from `first_origin` on (the
        lead-in the calibrated and tuned families need); the last series' are cached."""
        if self._cache is not None and self._cache[0] == replay.name:
            return self._cache[1]
        steps = np.arange(first_origin(replay), len(replay.load))
        times = replay.times(0, len(replay.load))
        out = backfill.forecast_origins(
            self._model_for(replay),
            times,
            replay.load,
            steps,
            HISTORY,
            self._longest + 1,
            QUANTILES,
            self._chunk,
        )
        self._cache = (replay.name, out)
        return out

    def _model_for(self, replay: Replay) -> BatchForecaster:
        if self._held_out is not None:
            source = replay.name.split("/")[0]
            if source not in self._models:
                self._models[source] = load_forecaster(self._held_out / source)
            return self._models[source]
        if self._model is None:
            self._model = self._load()
        return self._model


LEAD_IN = (
    objective.CALIBRATION_STEPS
    + objective.TUNING_STEPS
    + objective.WARMUP_STEPS
    + max(STARTUPS)
    + 2
)
"""Steps forecast before the first replayed one: the first tuning needs calibrated bounds over
its whole history, and those need the errors of the calibration steps before it."""


def first_origin(replay: Replay) -> int:
    """The first step forecast for a series (at least two steps of history before it: the
    model needs them to know the step)."""
    return max(2, replay.first - LEAD_IN)


def _bounds(
    replay: Replay, startup: int, forecasts: np.ndarray
) -> tuple[np.ndarray, objective.Bounds]:
    """Steps from `first_origin` on, and the calibrated bounds of the lead window there."""
    origin = first_origin(replay)
    steps = np.arange(origin, len(replay.load))
    median = forecasts[QUANTILES.index(0.5), :, : startup + 1].max(axis=1)
    peaks = np.full(len(replay.load), np.nan)
    peaks[origin:] = median
    return steps, objective.lead_window_bounds(replay.load, peaks, steps, startup + 1, QUANTILES)


def calibrated_family(replay: Replay, startup: int) -> Iterable[Candidate]:
    """The project's calibrated lead-window bound (`adapter.objective.lead_window_bounds`),
    the model's own quantile where too few errors are known, with the reactive metric at
    u_r = u_f: the knobs of `last_value_family`."""
    forecasts = forecaster_family.all_forecasts(replay)
    steps, bounds = _bounds(replay, startup, forecasts)
    replayed = slice(replay.first - steps[0], None)
    model_peaks = forecasts[:, :, : startup + 1].max(axis=2)
    last = replay.load[steps - 1]
    for quantile in QUANTILES:
        fallback = model_peaks[QUANTILES.index(quantile)]
        for utilisation in FORECAST_UTILISATIONS:
            setting = objective.Setting(quantile, utilisation, None)
            served = objective.counts(
                setting, bounds, last, replay.capacity, MIN_REPLICAS, MAX_REPLICAS, fallback
            )
            knobs = f"q={quantile:g} u_f=u_r={utilisation:g}"
            yield Candidate("calibrated", knobs, utilisation, served[replayed])


OBJECTIVES = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05)
"""The objectives (share of time above capacity) the tuned family is swept over."""
HEADROOMS = (0.0, 0.1, 0.2)
"""The objectives' headrooms (share of capacity kept free) it is swept over besides."""
FALLBACK_SETTING = objective.Setting(0.9, 1.0, 1.0)
"""A tuned target's setting while it has too little history (the manual quantile 0.9 at full
use, with the reactive part at full use in place of an HPA's own reactive metric)."""
RETUNE_STEPS = objective.RETUNE_SECONDS // STEP


def tuned_family(replay: Replay, startup: int) -> Iterable[Candidate]:
    """The objective-tuned policy, as a target with ``objective`` runs it: at the first replayed
    step and every `RETUNE_STEPS` after, `adapter.objective.evaluate` replays every setting
    over the `TUNING_STEPS` before (its own calibrated bounds; load up to the step before) and
    `choose` keeps the cheapest that met the objective; that setting's counts (reactive part
    folded in) are served until the next tuning. Swept over `OBJECTIVES` x
    `HEADROOMS`."""
    forecasts = forecaster_family.all_forecasts(replay)
    steps, bounds = _bounds(replay, startup, forecasts)
    origin = int(steps[0])
    model_peaks = forecasts[:, :, : startup + 1].max(axis=2)
    last = replay.load[steps - 1]
    autoscaler = objective.tuning_autoscaler(STEP, MIN_REPLICAS, MAX_REPLICAS)
    served = {
        setting: objective.counts(
            setting,
            bounds,
            last,
            replay.capacity,
            MIN_REPLICAS,
            MAX_REPLICAS,
            model_peaks[QUANTILES.index(setting.quantile)],
        )
        for setting in (*objective.SETTINGS, FALLBACK_SETTING)
    }
    tunings = range(replay.first, len(replay.load), RETUNE_STEPS)
    evaluations = []
    for at in tunings:
        # The history before `at`: its steps are replayed, the one before them is their
        # "last"; a step's bound only uses errors known before that step.
        begin = max(origin, at - objective.TUNING_STEPS - objective.WARMUP_STEPS)
        window = slice(begin - origin, at - origin)
        evaluations.append(
            objective.evaluate(
                replay.load[begin - 1 : at],
                dataclasses.replace(bounds, values=bounds.values[:, window]),
                replay.capacity,
                autoscaler,
                STEP,
                startup * STEP,
                tolerance=0.0,
                shares=[1 - headroom for headroom in HEADROOMS if headroom],
            )
        )
    for headroom in HEADROOMS:
        for share in OBJECTIVES:
            target = objective.Objective(share, headroom)
            counts = np.empty(len(replay.load) - replay.first)
            for at, evaluation in zip(tunings, evaluations, strict=True):
                choice = objective.choose(evaluation, target)
                setting = choice.setting or FALLBACK_SETTING
                part = slice(at - replay.first, at - replay.first + RETUNE_STEPS)
                counts[part] = served[setting][at - origin : at - origin + RETUNE_STEPS]
            knobs = f"objective={100 * share:g}% headroom={100 * headroom:g}%"
            yield Candidate("objective-tuned", knobs, None, counts)


def oracle_family(replay: Replay, startup: int) -> Iterable[Candidate]:
    """Knows the future: at t, exactly the pods steps t .. t + S need (nothing reactive)."""
    for utilisation in ORACLE_UTILISATIONS:
        need = np.ceil(replay.load / (replay.capacity * utilisation))
        padded = np.concatenate([need, np.repeat(need[-1:], startup)])
        cover = sliding_window_view(padded, startup + 1).max(axis=1)[replay.first :]
        yield Candidate("oracle", f"u={utilisation:g}", None, np.clip(cover, 0, MAX_REPLICAS))


forecaster_family = ForecasterFamily()
FAMILIES: tuple[Family, ...] = (
    reactive_family,
    last_value_family,
    forecaster_family,
    calibrated_family,
    tuned_family,
    oracle_family,
)
FAMILY_NAMES: dict[str, Family] = {
    "reactive": reactive_family,
    "last-value": last_value_family,
    "forecaster": forecaster_family,
    "calibrated": calibrated_family,
    "tuned": tuned_family,
    "oracle": oracle_family,
}
"""`--families` choices; the reactive HPA always runs (it is every cost's baseline)."""


def replay_series(
    replay: Replay, families: Sequence[Family] = FAMILIES, startups: Sequence[int] = STARTUPS
) -> list[Point]:
    """Every family's sweep on one series, at every start-up delay."""
    points = []
    for startup in startups:
        for family in families:
            for candidate in family(replay, startup):
                scores = replay_candidate(replay, candidate, startup)
                points.append(Point(candidate.family, candidate.knobs, startup, scores))
    return points


def replay_named(replay: Replay, names: Sequence[str]) -> list[Point]:
    """`replay_series` with the families of `FAMILY_NAMES` named: a worker process uses its
    own (so the forecaster is loaded once per process, not once per series)."""
    return replay_series(replay, [FAMILY_NAMES[name] for name in names])


@dataclasses.dataclass(frozen=True)
class Summary:
    """One candidate across series."""

    family: str
    knobs: str
    above: float
    """Pooled share of steps above capacity."""
    unserved: float
    """Mean over series of the unserved share of load (loads differ in scale: not pooled)."""
    cost_mean: float
    """Mean over series of pod-hours / the reactive HPA's at u = 0.7."""
    cost_median: float


BASELINE_KNOBS = f"u={BASELINE_UTILISATION:g}"


def summarise(per_series: Sequence[Sequence[Point]], startup: int) -> list[Summary]:
    """Across series, for one start-up delay, in the order the candidates were replayed."""
    order: list[tuple[str, str]] = []
    above: dict[tuple[str, str], list[float]] = {}
    unserved: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    for points in per_series:
        chosen = [point for point in points if point.startup == startup]
        baseline = next(
            point.scores.pod_hours
            for point in chosen
            if point.family == "reactive HPA" and point.knobs == BASELINE_KNOBS
        )
        for point in chosen:
            key = (point.family, point.knobs)
            if key not in above:
                order.append(key)
                above[key], unserved[key], ratios[key] = [], [], []
            above[key].append(point.scores.time_above_capacity)
            unserved[key].append(point.scores.unserved_share)
            ratios[key].append(point.scores.pod_hours / baseline)
    # Every series has a span of the same length, so the pooled share is the mean share.
    return [
        Summary(
            family,
            knobs,
            float(np.mean(above[family, knobs])),
            float(np.mean(unserved[family, knobs])),
            float(np.mean(ratios[family, knobs])),
            float(np.median(ratios[family, knobs])),
        )
        for family, knobs in order
    ]


def frontier(summaries: Sequence[Summary], budget: float) -> dict[str, Summary | None]:
    """Per family, its point with the lowest shortfall within a mean pod-hour budget."""
    best: dict[str, Summary | None] = {}
    for summary in summaries:
        current = best.setdefault(summary.family, None)
        if summary.cost_mean <= budget + 1e-9 and (
            current is None or summary.above < current.above
        ):
            best[summary.family] = summary
    return best


def table(summaries: Sequence[Summary], startup: int, series_count: int) -> str:
    lines = [
        f"S = {startup} ({series_count} series): pod-hours against the reactive HPA at u = 0.7",
        f"{'policy':24} {'knobs':22} {'above cap %':>11} {'unserved %':>10} "
        f"{'cost mean':>9} {'median':>7}",
    ]
    for summary in summaries:
        lines.append(
            f"{summary.family:24} {summary.knobs:22} {100 * summary.above:11.2f} "
            f"{100 * summary.unserved:10.3f} {summary.cost_mean:9.3f} {summary.cost_median:7.3f}"
        )
    families = list(dict.fromkeys(summary.family for summary in summaries))
    lines += ["", "frontier: lowest steps above capacity % (knobs) within a mean budget"]
    lines.append(f"{'budget':>6}  " + "  ".join(f"{family:34}" for family in families))
    for budget in BUDGETS:
        best = frontier(summaries, budget)
        cells = []
        for family in families:
            point = best[family]
            cell = "-" if point is None else f"{100 * point.above:5.2f} ({point.knobs})"
            cells.append(f"{cell:34}")
        lines.append(f"{budget:6.1f}  " + "  ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--series", type=int, default=0, help="replay every k-th series only, N of them in all"
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="model folder for the forecaster-based families (default: the shipped one); a "
        "leave-one-source-out run passes a model trained without the replayed source",
    )
    parser.add_argument(
        "--leave-one-out",
        type=Path,
        help="folder of models, one per source (``<folder>/<source>``, trained without that "
        "source): each series is forecast by the model that never saw its source",
    )
    parser.add_argument(
        "--families",
        default=",".join(FAMILY_NAMES),
        help=f"comma-separated, of {', '.join(FAMILY_NAMES)} (the reactive HPA always runs)",
    )
    args = parser.parse_args()
    names = ["reactive", *(n for n in args.families.split(",") if n and n != "reactive")]
    unknown = [name for name in names if name not in FAMILY_NAMES]
    if unknown:
        parser.error(f"unknown families: {', '.join(unknown)}")
    names = list(dict.fromkeys(names))

    if args.leave_one_out is not None:
        forecaster_family.leave_one_out(args.leave_one_out)
    elif args.model is not None:
        # Set before the worker processes start: they inherit it.
        forecaster_family.use(partial(load_forecaster, args.model))
    started = time.perf_counter()
    traces = read_folder(args.data)
    replays = prepare(traces)
    print(f"{len(replays)} of {len(traces)} traces fit the protocol (5 min or finer, 4 days)")
    replays = subset(replays, args.series)
    origins = sum(len(replay.load) - replay.first for replay in replays)
    print(f"replaying {len(replays)} series, {origins} forecast origins each family")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        run = partial(replay_named, names=names)
        per_series = list(pool.map(run, replays, chunksize=1))
    for startup in STARTUPS:
        print(table(summarise(per_series, startup), startup, len(replays)))
        print()
    elapsed = time.perf_counter() - started
    print(f"run time: {elapsed:.0f} s on {args.jobs} processes", end="")
    print(f" ({1000 * elapsed / max(1, origins):.1f} s per 1,000 origins, all families)")


def subset(replays: Sequence[Replay], count: int) -> list[Replay]:
    """`count` series spread evenly (every k-th, from the first); all when `count` is 0."""
    if count <= 0 or count >= len(replays):
        return list(replays)
    every = len(replays) // count
    return list(replays[::every][:count])


if __name__ == "__main__":
    main()
