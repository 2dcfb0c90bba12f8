"""Scaling for an objective: calibrated lead-window bounds, and the cheapest sizing that met a
target's objective on its own recent history.

**The lead window.** A count ordered at step t (from data up to t - 1) must cover the steps
t .. t + S: the current one (a scale-down takes pods away at once) up to the one the new pods
are ready for, S = the start-up delay in steps. `window` below is S + 1.

**Calibrated bounds** (`lead_window_bounds`). What the policy needs is the q-quantile of the
*maximum* load over the lead window, not a band over hours. Two predictors of that maximum
are calibrated on their own realised errors over the `CALIBRATION_STEPS` before t (split
conformal: each error is known once its window has passed):

- the model: the maximum of its median forecast over the window, plus the q-quantile of its
  recent errors against the realised maxima;
- the last value seen, plus the q-quantile of its recent errors.

At each step and quantile the bound is the predictor whose calibrated quantile had the lower
mean quantile (pinball) loss over those errors. Where the series is unpredictable the model's
errors are no smaller than the last value's and the last value is taken; where it is
predictable the model's tighter errors win. With fewer than `MIN_ERRORS` known errors there is
no calibrated bound (NaN) and the caller uses the model's own quantile.

**Settings** (`Setting`): the served count is

    max( ceil(bound_q / (per_pod x u_f)),  ceil(last value / (per_pod x u_r)) )

with `per_pod` what one pod serves at full use: the forecast part sized for utilisation u_f,
the reactive part (the last value seen, as a reactive HPA sees it) at u_r, or none.

**Tuning** (`tune`): every setting of the grid is replayed through the simulated HPA
(`adapter.simulator`) over the recent history, from the bounds each step would have had then;
the cheapest that kept the time above capacity (less the objective's headroom, if any) within
the objective is chosen. If none did,
the one with the least time above capacity is chosen and the choice says the objective was
not met. With fewer than `MIN_TUNING_STEPS` of history there is no choice and the caller keeps
the manual quantile.

Pure numpy and the simulator: no I/O, no clock, no logging. Nothing here looks at a step's
load before the step has passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from adapter.simulator import (
    Autoscaler,
    ExternalMetric,
    Scores,
    protocol_autoscaler,
    reactive_metric,
    score,
    simulate,
)

__all__ = [
    "CALIBRATION_STEPS",
    "MIN_ERRORS",
    "MIN_TUNING_STEPS",
    "QUANTILES",
    "SETTINGS",
    "TUNING_STEPS",
    "Bounds",
    "Choice",
    "Objective",
    "Setting",
    "RETUNE_SECONDS",
    "WARMUP_STEPS",
    "Evaluation",
    "choose",
    "counts",
    "evaluate",
    "fill_gaps",
    "lead_window_bounds",
    "manual_setting",
    "tuning_autoscaler",
    "realised_peaks",
    "replay_setting",
    "tune",
]

CALIBRATION_STEPS = 576
"""Errors a bound is calibrated on: two days at 5-minute steps."""
MIN_ERRORS = 96
"""Fewer known errors than this (8 hours at 5 minutes): no calibrated bound."""
TUNING_STEPS = 864
"""History a setting is chosen on: three days at 5-minute steps."""
MIN_TUNING_STEPS = 288
"""Less history than this (a day at 5 minutes): no choice; the manual quantile applies."""
QUANTILES = (0.5, 0.7, 0.8, 0.9, 0.95)
UTILISATIONS = (1.0, 0.85, 0.7)
BASELINE_UTILISATION = 0.7
"""The reactive HPA a choice's cost is stated against (pod-hours at 70 % per pod)."""
RETUNE_SECONDS = 86400
"""How often a target with an objective is tuned again."""
WARMUP_STEPS = 12
"""Replayed steps that settle the simulated HPA before a tuning replay is scored."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a target's count is sized (see the module's docstring)."""

    quantile: float
    utilisation: float
    """u_f: the share of a pod's capacity the forecast part sizes for."""
    reactive: float | None
    """u_r: the reactive part's utilisation; None: no reactive part."""

    def __str__(self) -> str:
        reactive = "none" if self.reactive is None else f"{self.reactive:g}"
        return f"q={self.quantile:g} u_f={self.utilisation:g} u_r={reactive}"


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(quantile, utilisation, reactive)
    for quantile in QUANTILES
    for utilisation in UTILISATIONS
    for reactive in (utilisation, None)
)
"""The grid `tune` chooses from."""


def manual_setting(quantile: float) -> Setting:
    """The sizing of a target without an objective: its quantile's bound at full use, with no
    reactive part (the HPA's own reactive metric is the safety net)."""
    return Setting(quantile, 1.0, None)


def tuning_autoscaler(step_seconds: int, low: int, high: int) -> Autoscaler:
    """The HPA a tuning replay runs through: one decision per step on the step's value, the
    10 % tolerance, scale-down held over the previous step (``scaling-replay.md``)."""
    return protocol_autoscaler(step_seconds, high, low)


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a target asks of its capacity."""

    max_time_above_capacity: float
    """Share of the time (0..1) the load may exceed the ready pods' capacity (less the
    headroom)."""
    headroom: float = 0.0
    """Share of the capacity (0..1) the load should leave free: the time counted against the
    objective is the time above (1 - headroom) x capacity. A guard band: the choice then
    needs a margin over the history it is tuned on, not just a clean record."""

    @property
    def capacity_share(self) -> float:
        """The share of the capacity the load is measured against."""
        return 1.0 - self.headroom

    def __str__(self) -> str:
        where = "capacity" if self.headroom == 0 else f"{100 * self.capacity_share:g}% of capacity"
        return f"at most {100 * self.max_time_above_capacity:g}% of the time above {where}"


def realised_peaks(load: np.ndarray, window: int) -> np.ndarray:
    """``peaks[t] = max(load[t .. t + window - 1])``; NaN where the window runs past the end."""
    load = np.asarray(load, dtype=np.float64)
    peaks = np.full(load.size, np.nan)
    if load.size >= window:
        peaks[: load.size - window + 1] = sliding_window_view(load, window).max(axis=1)
    return peaks


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Calibrated upper bounds of the lead-window maximum at some steps."""

    quantiles: tuple[float, ...]
    values: np.ndarray
    """(quantile, step); NaN where too few errors were known."""
    model_share: np.ndarray
    """Per quantile, the share of those steps whose bound came from the model (else the last
    value)."""

    def at(self, quantile: float) -> np.ndarray:
        return np.asarray(self.values[self.quantiles.index(quantile)])


def lead_window_bounds(
    load: np.ndarray,
    median_peaks: np.ndarray,
    steps: np.ndarray,
    window: int,
    quantiles: Sequence[float] = QUANTILES,
    calibration: int = CALIBRATION_STEPS,
) -> Bounds:
    """The calibrated bound at each of `steps` (each >= 1), from what was known before it.

    `load` is the realised load per step; `median_peaks[t]` the maximum over steps
    t .. t + window - 1 of the model's median forecast made at t from data up to t - 1 (NaN
    where no forecast was made). The errors known before t are those of the steps j with
    ``t - window - calibration < j <= t - window``.
    """
    load = np.asarray(load, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if steps.size and (steps.min() < 1 or steps.max() >= load.size):
        raise ValueError("every step must have a step before it within the load")
    peaks = realised_peaks(load, window)
    last = np.concatenate([[np.nan], load[:-1]])
    sources = (np.asarray(median_peaks, dtype=np.float64), last)
    centres = [source[steps] for source in sources]
    rows = [_known_errors(peaks - source, steps, window, calibration) for source in sources]
    values = np.empty((len(quantiles), steps.size))
    model_share = np.empty(len(quantiles))
    for index, quantile in enumerate(quantiles):
        offsets = [_row_quantile(row, quantile) for row in rows]
        losses = [
            _mean_pinball(row, offset, quantile) for row, offset in zip(rows, offsets, strict=True)
        ]
        bounds = [centre + offset for centre, offset in zip(centres, offsets, strict=True)]
        # The model's bound where its calibrated loss is lower (or the last value's is unknown).
        use_model = np.isfinite(bounds[0]) & ~(losses[1] < losses[0])
        values[index] = np.where(use_model, bounds[0], bounds[1])
        model_share[index] = float(np.mean(use_model)) if steps.size else math.nan
    return Bounds(tuple(quantiles), values, model_share)


def _known_errors(
    errors: np.ndarray, steps: np.ndarray, window: int, calibration: int
) -> np.ndarray:
    """Per step t, the errors of steps t - window - calibration + 1 .. t - window, sorted
    (NaN last)."""
    padded = np.concatenate([np.full(calibration + window, np.nan), errors])
    # Row t covers padded t + 1 .. t + calibration (errors t - window - calibration + 1 ..).
    rows = sliding_window_view(padded, calibration)[steps + 1]
    return np.asarray(np.sort(rows, axis=1))


def _row_quantile(rows: np.ndarray, quantile: float) -> np.ndarray:
    """Per sorted row (NaN last), its quantile (linear, as numpy); NaN below `MIN_ERRORS`."""
    known = np.sum(~np.isnan(rows), axis=1)
    last = np.maximum(known - 1, 0)
    position = quantile * last
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, last)
    line = np.arange(rows.shape[0])
    below, above = rows[line, low], rows[line, high]
    value = below + (position - low) * (above - below)
    return np.where(known >= MIN_ERRORS, value, np.nan)


def _mean_pinball(rows: np.ndarray, offset: np.ndarray, quantile: float) -> np.ndarray:
    """Per row, the mean quantile loss of predicting `offset` for each of its errors."""
    miss = rows - offset[:, None]
    loss = np.where(miss > 0, quantile * miss, (quantile - 1) * miss)
    known = np.sum(~np.isnan(rows), axis=1)
    total = np.sum(np.where(np.isnan(rows), 0.0, loss), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, total / known, np.nan)


def counts(
    setting: Setting,
    bounds: Bounds,
    last: np.ndarray,
    per_pod: float,
    low: int,
    high: int,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """The count each step is served under `setting`, clamped to [low, high].

    `last` is the load seen last before each step; `fallback` the bound to use where the
    calibrated one is unknown (the model's own quantile); with none, such steps are NaN
    (nothing served).
    """
    bound = bounds.at(setting.quantile)
    if fallback is not None:
        bound = np.where(np.isnan(bound), fallback, bound)
    need = _ceil(np.maximum(bound, 0.0) / (per_pod * setting.utilisation))
    if setting.reactive is not None:
        need = np.maximum(need, _ceil(np.maximum(last, 0.0) / (per_pod * setting.reactive)))
    clamped = np.clip(need, low, high)
    return np.where(np.isnan(need), np.nan, clamped)


def _ceil(values: np.ndarray) -> np.ndarray:
    # A hair of tolerance, as `adapter.scaling`: 4.000000001 replicas are 4.
    return np.ceil(values - 1e-9)


def replay_setting(
    load: np.ndarray,
    served: np.ndarray,
    per_pod: float,
    autoscaler: Autoscaler,
    step_seconds: int,
    startup_seconds: float,
    *,
    tolerance: float | None,
    warmup: int = 0,
    extra: Sequence[ExternalMetric] = (),
    shares: Sequence[float] = (),
) -> Scores:
    """Replay served counts (one per step of `load`) through the HPA; score after `warmup`.

    The counts are one ``AverageValue 1`` metric with `tolerance` (None: the HPA's); `extra`
    are further metrics of the same HPA (a reactive safety net, for example). The replay
    starts from the count the first served value asks for; `shares` as `score`.
    """
    served = np.asarray(served, dtype=np.float64)
    metric = ExternalMetric(served, 1.0, tolerance=tolerance)
    first = served[np.isfinite(served)]
    initial = int(first[0]) if first.size else autoscaler.min_replicas
    return _replay(
        load,
        [metric, *extra],
        initial,
        per_pod,
        autoscaler,
        step_seconds,
        startup_seconds,
        warmup,
        shares,
    )


def _replay(
    load: np.ndarray,
    metrics: Sequence[ExternalMetric],
    initial: int,
    per_pod: float,
    autoscaler: Autoscaler,
    step_seconds: int,
    startup_seconds: float,
    warmup: int,
    shares: Sequence[float] = (),
) -> Scores:
    load = np.asarray(load, dtype=np.float64)
    initial = min(max(initial, autoscaler.min_replicas), autoscaler.max_replicas)
    trace = simulate(metrics, autoscaler, step_seconds, startup_seconds, initial_replicas=initial)
    return score(trace.after(warmup), load[warmup:], per_pod, shares)


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Each NaN takes the value before it (leading ones the first value); all-NaN stays."""
    values = np.asarray(values, dtype=np.float64)
    observed = ~np.isnan(values)
    if not observed.any():
        return values.copy()
    index = np.where(observed, np.arange(values.size), 0)
    np.maximum.accumulate(index, out=index)
    filled = values[index]
    filled[: int(np.argmax(observed))] = values[observed][0]
    return filled


@dataclasses.dataclass(frozen=True)
class Choice:
    """The outcome of tuning one target."""

    setting: Setting | None
    """None: too little history; the manual quantile applies."""
    met: bool
    """Whether the setting kept the objective over the history it was tuned on."""
    expected: Scores | None
    """The chosen setting's replay over that history."""
    cost: float
    """Its pod-hours over those of a reactive HPA at `BASELINE_UTILISATION` (NaN: none)."""
    reason: str
    """What to tell the user: the choice and its expected figures, or why there is none."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Every setting's replay over one stretch of history (what `choose` picks from)."""

    outcomes: tuple[tuple[Setting, Scores], ...]
    baseline: Scores
    """A reactive HPA at `BASELINE_UTILISATION` over the same stretch."""
    steps: int
    """Scored steps."""


def evaluate(
    load: np.ndarray,
    bounds: Bounds,
    per_pod: float,
    autoscaler: Autoscaler,
    step_seconds: int,
    startup_seconds: float,
    *,
    fallback: np.ndarray | None = None,
    tolerance: float | None = None,
    settings: Sequence[Setting] = SETTINGS,
    warmup: int = WARMUP_STEPS,
    shares: Sequence[float] = (),
) -> Evaluation | str:
    """Replay every setting over `load`; or why that is not possible (too little history).

    `load` holds the history to tune on with one step before it: `load[1:]` is replayed,
    `load[0]` is what the first replayed step saw last. `bounds` has a bound per replayed
    step, for every quantile of `settings`; `fallback` (the model's own quantile bound at
    the same steps, one row per quantile of `bounds`) fills steps whose bound is unknown,
    without it only the steps from which on every bound is known are replayed. The first
    `warmup` replayed steps settle the HPA and are not scored. `shares` of the capacity are
    scored besides the capacity itself (what an objective with headroom is measured against).
    """
    load = np.asarray(load, dtype=np.float64)
    if bounds.values.shape[1] != load.size - 1:
        raise ValueError(f"{bounds.values.shape[1]} bounds for {load.size - 1} replayed steps")
    if fallback is None:
        unknown = np.flatnonzero(~np.all(np.isfinite(bounds.values), axis=0))
        begin = int(unknown[-1]) + 1 if unknown.size else 0
        load = load[begin:]
        bounds = dataclasses.replace(bounds, values=bounds.values[:, begin:])
    observed = int(np.sum(np.isfinite(load[1 + warmup :])))
    if observed < MIN_TUNING_STEPS or not np.isfinite(load[0]):
        return (
            f"too little history to tune on ({observed} of {MIN_TUNING_STEPS} steps with a "
            "calibrated bound and a load): the manual quantile applies"
        )
    load = fill_gaps(load)
    replayed, last = load[1:], load[:-1]
    reactive_per_pod = per_pod * BASELINE_UTILISATION
    baseline = _replay(
        replayed,
        [reactive_metric(replayed, reactive_per_pod, step_seconds)],
        int(_ceil(np.array([max(float(last[0]), 0.0) / reactive_per_pod]))[0]),
        per_pod,
        autoscaler,
        step_seconds,
        startup_seconds,
        warmup,
    )
    outcomes: list[tuple[Setting, Scores]] = []
    rows: Mapping[float, np.ndarray] = (
        {} if fallback is None else dict(zip(bounds.quantiles, fallback, strict=True))
    )
    for setting in settings:
        served = counts(
            setting,
            bounds,
            last,
            per_pod,
            autoscaler.min_replicas,
            autoscaler.max_replicas,
            rows.get(setting.quantile),
        )
        if np.isnan(served).any():
            continue
        scores = replay_setting(
            replayed,
            served,
            per_pod,
            autoscaler,
            step_seconds,
            startup_seconds,
            tolerance=tolerance,
            warmup=warmup,
            shares=shares,
        )
        outcomes.append((setting, scores))
    return Evaluation(tuple(outcomes), baseline, replayed.size - warmup)


def choose(evaluation: Evaluation | str, objective: Objective) -> Choice:
    """The cheapest setting that met `objective`; else the one closest to it, said so."""
    if isinstance(evaluation, str):
        return Choice(None, False, None, math.nan, evaluation)
    if not evaluation.outcomes:
        return Choice(None, False, None, math.nan, "no setting could be replayed")
    limit = objective.max_time_above_capacity + 1e-12
    share = objective.capacity_share

    def above(item: tuple[Setting, Scores]) -> float:
        return item[1].time_above(share)

    met = [item for item in evaluation.outcomes if above(item) <= limit]
    if met:
        setting, scores = min(met, key=lambda item: (item[1].pod_hours, str(item[0])))
    else:
        setting, scores = min(
            evaluation.outcomes, key=lambda item: (above(item), item[1].pod_hours)
        )
    base = evaluation.baseline.pod_hours
    cost = scores.pod_hours / base if base > 0 else math.nan
    where = (
        ""
        if objective.headroom == 0
        else (f" ({100 * scores.time_above(share):.2f}% above {100 * share:g}% of it)")
    )
    figures = (
        f"{setting}: {100 * scores.time_above_capacity:.2f}% of the time above capacity{where}, "
        f"{cost:.2f}x the pod-hours of a reactive HPA at {BASELINE_UTILISATION:g}, over the last "
        f"{evaluation.steps} steps"
    )
    if met:
        return Choice(setting, True, scores, cost, figures)
    return Choice(
        setting,
        False,
        scores,
        cost,
        f"the objective ({objective}) cannot be met on the recent history; the closest is "
        f"{figures}",
    )


def tune(
    load: np.ndarray,
    bounds: Bounds,
    per_pod: float,
    objective: Objective,
    autoscaler: Autoscaler,
    step_seconds: int,
    startup_seconds: float,
    *,
    fallback: np.ndarray | None = None,
    tolerance: float | None = None,
    settings: Sequence[Setting] = SETTINGS,
    warmup: int = WARMUP_STEPS,
) -> Choice:
    """Choose the cheapest setting that met `objective` over `load` (`evaluate`, then
    `choose`)."""
    evaluation = evaluate(
        load,
        bounds,
        per_pod,
        autoscaler,
        step_seconds,
        startup_seconds,
        fallback=fallback,
        tolerance=tolerance,
        settings=settings,
        warmup=warmup,
        shares=() if objective.headroom == 0 else (objective.capacity_share,),
    )
    return choose(evaluation, objective)
