"""The evaluation protocol (shared/data/README.md), for the model and the anchors alike.

- Every trace is put on a 5-minute grid (the mean of each bucket; for rates and counts the
  sum would only rescale the series, which no metric here sees).
- Forecast origins every 2 hours over the last 3 days, each with up to 14 days of context; a
  forecast covers 48 steps (4 h) and is scored at 12 steps (1 h) and 48 steps (4 h), and at the
  short horizons the scaling policy's lead windows need: 1, 2 and 3 steps (5, 10, 15 minutes).
- MASE at horizon h: mean absolute error of the median over the first h steps, divided by the
  in-sample MAE of the daily seasonal naive method (lag 288) on that origin's context; averaged
  over origins per series.
  *Relative MASE* = the method's MASE / the daily seasonal naive's MASE, per series, then the
  geometric mean over series (the headline figure; 1.0 = as good as "same time yesterday").
- Weighted quantile loss over q in {0.1, 0.5, 0.9} (2 * pinball / sum |actual|, per series,
  averaged over series), how often the actual value exceeds the 0.9 quantile over the whole
  horizon, and the 0.9 quantile's coverage (share of actual values at or below it, pooled) at
  the steps 10 minutes, 1 h and 4 h ahead.
- CPU time per forecast (process time around each call).

A per-series relative MASE of exactly 0 (a method that reproduces a trace that repeats itself
exactly, as one of the Crane traces repeats its week) would make the geometric mean 0; per-series
values are floored at 1e-3, and the table also gives the means without such traces.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from forecaster.predictor import Forecaster
from forecaster.series import Series, resample

STEP = 300
DAY = 288
HEADLINE_HORIZONS = (12, 48)
"""1 h and 4 h: the horizons the exact-repeat check and its columns use."""
SHORT_HORIZONS = (1, 2, 3)
"""5, 10 and 15 minutes: the lead windows of the scaling policy (start-up of 0 to 2 steps)."""
HORIZONS = (*SHORT_HORIZONS, *HEADLINE_HORIZONS)
COVERAGE_HORIZONS = (2, 12, 48)
"""10 minutes, 1 h and 4 h: where the coverage of the 0.9 quantile is reported (at that step)."""
ORIGIN_EVERY = 24
EVALUATION_DAYS = 3
CONTEXT_DAYS = 14
QUANTILES = (0.1, 0.5, 0.9)
FLOOR = 1e-3

Method = Callable[[np.ndarray, np.ndarray, int, Sequence[float]], np.ndarray]
"""(context timestamps, context values, horizon, quantiles) -> (len(quantiles), horizon)."""


@dataclasses.dataclass
class SeriesScore:
    name: str
    mase: dict[int, float]
    naive_mase: dict[int, float]
    wql: float
    exceed: int
    observed: int
    cpu_seconds: float
    forecasts: int
    covered: dict[int, int] = dataclasses.field(default_factory=dict)
    """Per `COVERAGE_HORIZONS` step: forecasts whose 0.9 quantile covered the actual value."""
    counted: dict[int, int] = dataclasses.field(default_factory=dict)
    """Per `COVERAGE_HORIZONS` step: forecasts with an actual value there."""

    def relative(self, horizon: int) -> float:
        return (
            self.mase[horizon] / self.naive_mase[horizon]
            if self.naive_mase[horizon] > 0
            else math.nan
        )


@dataclasses.dataclass
class Summary:
    method: str
    relative_mase: dict[int, float]
    wql: float
    exceedance: float
    cpu_ms: float
    per_series: list[SeriesScore]
    coverage: dict[int, float] = dataclasses.field(default_factory=dict)
    """Pooled share of actual values at or below the 0.9 quantile, at each `COVERAGE_HORIZONS`
    step."""


def prepare(traces: Sequence[Series]) -> list[Series]:
    """The traces that fit the protocol, on the 5-minute grid (coarser ones are skipped)."""
    usable = []
    for trace in traces:
        if 0 < trace.step <= STEP:
            gridded = resample(trace, STEP)
            if len(gridded) >= (EVALUATION_DAYS + 1) * DAY:
                usable.append(gridded)
    return usable


def origins(length: int) -> range:
    return range(length - EVALUATION_DAYS * DAY, length - max(HORIZONS) + 1, ORIGIN_EVERY)


@dataclasses.dataclass(frozen=True)
class Window:
    """One scored forecast origin of a trace: what a method reads, what then happened, and
    the MASE scale of that context."""

    start: int
    origin: int
    context: np.ndarray
    actual: np.ndarray
    scale: float


def windows(trace: Series) -> Iterator[Window]:
    """The trace's scored origins (`origins`), each with up to `CONTEXT_DAYS` of context and
    the longest horizon's actual values; origins whose context has no seasonal variation (a
    scale of 0 or none) are not scored."""
    horizon = max(HORIZONS)
    for origin in origins(len(trace)):
        start = max(0, origin - CONTEXT_DAYS * DAY)
        context = trace.values[start:origin]
        scale = float(np.nanmean(np.abs(context[DAY:] - context[:-DAY])))
        if np.isfinite(scale) and scale != 0:
            yield Window(start, origin, context, trace.values[origin : origin + horizon], scale)


def scaled_error(forecast: np.ndarray, window: Window, h: int) -> float:
    """Mean absolute error of `forecast` over the observed steps of the first `h`, in the
    window's scale units (NaN-free: call it only when one of those steps is observed)."""
    seen = ~np.isnan(window.actual[:h])
    return float(np.mean(np.abs(forecast[:h][seen] - window.actual[:h][seen]))) / window.scale


def geometric_mean(ratios: Sequence[float] | np.ndarray) -> float:
    """The headline aggregate of per-series relative MASE: floored at `FLOOR`, then the
    geometric mean."""
    return float(np.exp(np.mean(np.log(np.maximum(np.asarray(ratios), FLOOR)))))


def evaluate(name: str, method: Method, traces: Sequence[Series]) -> Summary:
    return evaluate_each(name, lambda trace: method, traces)


def evaluate_each(
    name: str, method_for: Callable[[Series], Method], traces: Sequence[Series]
) -> Summary:
    """Each trace forecast by the method `method_for` names for it (a leave-one-source-out
    run: the model trained without the trace's source)."""
    return summarise(name, [_score(trace, method_for(trace)) for trace in traces])


def summarise(name: str, scores: Sequence[SeriesScore]) -> Summary:
    """Scores of some series as one method's summary (geometric mean of relative MASE)."""
    relative: dict[int, float] = {}
    for horizon in HORIZONS:
        relative[horizon] = geometric_mean([score.relative(horizon) for score in scores])
    return Summary(
        method=name,
        relative_mase=relative,
        wql=float(np.mean([score.wql for score in scores])),
        exceedance=sum(s.exceed for s in scores) / max(1, sum(s.observed for s in scores)),
        cpu_ms=1000 * sum(s.cpu_seconds for s in scores) / max(1, sum(s.forecasts for s in scores)),
        per_series=list(scores),
        coverage={
            h: sum(x.covered.get(h, 0) for x in scores)
            / max(1, sum(x.counted.get(h, 0) for x in scores))
            for h in COVERAGE_HORIZONS
        },
    )


def source_of(name: str) -> str:
    """The source of a trace: the top folder of its name."""
    return name.split("/", 1)[0]


def by_source(summaries: Sequence[Summary]) -> dict[str, list[Summary]]:
    """Each source's share of `summaries`: every method on that source's series only."""
    sources = sorted({source_of(score.name) for s in summaries for score in s.per_series})
    return {
        source: [
            summarise(s.method, [x for x in s.per_series if source_of(x.name) == source])
            for s in summaries
        ]
        for source in sources
    }


def _score(trace: Series, method: Method) -> SeriesScore:
    errors: dict[int, list[float]] = {h: [] for h in HORIZONS}
    naive: dict[int, list[float]] = {h: [] for h in HORIZONS}
    pinball = 0.0
    magnitude = 0.0
    exceed = observed = 0
    cpu = 0.0
    count = 0
    covered = dict.fromkeys(COVERAGE_HORIZONS, 0)
    counted = dict.fromkeys(COVERAGE_HORIZONS, 0)
    horizon = max(HORIZONS)
    for window in windows(trace):
        actual = window.actual
        began = time.process_time()
        forecast = method(
            trace.timestamps[window.start : window.origin], window.context, horizon, QUANTILES
        )
        cpu += time.process_time() - began
        count += 1
        seasonal = seasonal_naive(window.context, horizon)
        seen = ~np.isnan(actual)
        for h in HORIZONS:
            if seen[:h].any():
                errors[h].append(scaled_error(forecast[1], window, h))
                naive[h].append(scaled_error(seasonal, window, h))
        for row, q in enumerate(QUANTILES):
            difference = actual[seen] - forecast[row][seen]
            pinball += float(np.sum(np.maximum(q * difference, (q - 1) * difference)))
        magnitude += float(np.sum(np.abs(actual[seen])))
        exceed += int(np.sum(actual[seen] > forecast[-1][seen]))
        observed += int(np.sum(seen))
        for h in COVERAGE_HORIZONS:
            if h <= actual.size and seen[h - 1]:
                counted[h] += 1
                covered[h] += int(actual[h - 1] <= forecast[-1][h - 1])
    return SeriesScore(
        name=trace.name,
        mase={h: float(np.mean(errors[h])) for h in HORIZONS},
        naive_mase={h: float(np.mean(naive[h])) for h in HORIZONS},
        wql=2 * pinball / len(QUANTILES) / magnitude if magnitude > 0 else math.nan,
        exceed=exceed,
        observed=observed,
        cpu_seconds=cpu,
        forecasts=count,
        covered=covered,
        counted=counted,
    )


def seasonal_naive(context: np.ndarray, horizon: int) -> np.ndarray:
    """The daily seasonal naive forecast the protocol scores against: the value one day
    (`DAY` steps) before each step, from `context` only."""
    steps = np.arange(horizon)
    return np.asarray(context[len(context) + steps - DAY * (1 + steps // DAY)])


def compare(
    forecaster: Forecaster | Callable[[Series], Forecaster],
    anchors: str,
    traces: Sequence[Series],
) -> list[Summary]:
    """The model, then the anchors named by `anchors` (see `anchor_methods`), on every trace;
    progress goes to stderr. `forecaster` may be a function of the trace (leave one source
    out: the model that never saw the trace's source)."""
    model_for = _every_trace(forecaster) if isinstance(forecaster, Forecaster) else forecaster
    began = time.perf_counter()
    summaries = [evaluate_each("model", lambda trace: model_for(trace).predict, traces)]
    print(f"  model: {time.perf_counter() - began:.0f}s", file=sys.stderr, flush=True)
    for name, method in anchor_methods(anchors):
        began = time.perf_counter()
        summaries.append(evaluate(name, method, traces))
        print(f"  {name}: {time.perf_counter() - began:.0f}s", file=sys.stderr, flush=True)
    return summaries


def _every_trace(forecaster: Forecaster) -> Callable[[Series], Forecaster]:
    return lambda trace: forecaster


def anchor_methods(spec: str) -> list[tuple[str, Method]]:
    """Anchors by comma-separated name, "all" or "none" (see `forecaster.anchors`)."""
    if spec == "none":
        return []
    from forecaster import anchors

    names = list(anchors.ANCHORS) if spec == "all" else spec.split(",")
    unknown = [name for name in names if name not in anchors.ANCHORS]
    if unknown:
        raise SystemExit(f"unknown anchor(s) {unknown}; known: {', '.join(anchors.ANCHORS)}")
    return [(name, anchor_method(anchors.ANCHORS[name])) for name in names]


def anchor_method(
    anchor: Callable[[np.ndarray, int, int, Sequence[float]], np.ndarray],
) -> Method:
    def method(
        times: np.ndarray, values: np.ndarray, horizon: int, quantiles: Sequence[float]
    ) -> np.ndarray:
        return anchor(values, STEP, horizon, quantiles)

    return method


def horizon_label(steps: int) -> str:
    """A horizon in steps as the table names it: 5m, 15m, 1h, 4h."""
    minutes = steps * STEP // 60
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def table(summaries: Sequence[Summary], series_count: int) -> str:
    """The comparison table. When a method reproduces some trace exactly (relative MASE below
    the floor), the last two columns repeat the geometric means without those traces, for
    every method alike, so that the comparison does not rest on them."""
    exact = {
        score.name
        for summary in summaries
        for score in summary.per_series
        if min(score.relative(h) for h in HEADLINE_HORIZONS) < FLOOR
    }
    # 1 h and 4 h first, where they always were; the scaling policy's short horizons beside.
    columns = (*HEADLINE_HORIZONS, *SHORT_HORIZONS)
    lines = [
        f"{series_count} series on a 5-minute grid; origins every 2 h over the last 3 days; "
        f"up to 14 days of context; relMASE at h = over the first h of each forecast",
        f"{'method':<16}"
        + "".join(f" {'relMASE ' + horizon_label(h):>11}" for h in columns)
        + f" {'wQL':>8} {'P90 exceed':>10} {'CPU ms/fc':>10}"
        + "".join(f" {'cov90 ' + horizon_label(h):>10}" for h in COVERAGE_HORIZONS)
        + "".join(f" {horizon_label(h) + ' w/o exact':>13}" for h in HEADLINE_HORIZONS if exact),
    ]
    for s in summaries:
        line = (
            f"{s.method:<16}"
            + "".join(f" {s.relative_mase[h]:>11.3f}" for h in columns)
            + f" {s.wql:>8.4f} {100 * s.exceedance:>9.1f}% {s.cpu_ms:>10.2f}"
            + "".join(f" {s.coverage.get(h, math.nan):>10.3f}" for h in COVERAGE_HORIZONS)
        )
        if exact:
            kept = [score for score in s.per_series if score.name not in exact]
            line += "".join(
                f" {float(np.exp(np.mean([np.log(x.relative(h)) for x in kept]))):>13.3f}"
                for h in HEADLINE_HORIZONS
            )
        lines.append(line)
    if exact:
        lines.append(
            f"exact repeats (relative MASE < {FLOOR}, floored): {', '.join(sorted(exact))}"
        )
    return "\n".join(lines)
