"""Forecasting benchmark: accuracy against the anchors, in one run, and the costs.

1. The evaluation protocol (`forecaster.backtest`) on every trace under `--data` that has a
   step of 5 minutes or finer, for the pretrained model and the anchors (last value, daily
   seasonal naive, Holt-Winters, MSTL + AutoETS, and Fracast-0, a pretrained foundation
   model), measured now, side by side: relative MASE at 5, 10 and 15 minutes (the scaling
   policy's lead windows) and at 1 h and 4 h. With `--leave-one-out DIR` each trace is
   forecast by ``DIR/<its source>``, a model trained without that source (here and in 2.), and
   the table is printed pooled and per held-out source: the figure that says how the model
   does on traffic it has never seen.
2. The lead-window maximum (`lead_window_scores`): what the scaling policy sizes for is the
   maximum load over the W = S + 1 steps t .. t + S a count ordered at step t must cover
   (`adapter.objective`). Over the last day of each trace's evaluation span, at every step, three
   q = 0.9 upper bounds of that maximum, each from data up to t - 1, against the realised one:
   the model's own 0.9 quantile maximised over the window; the calibrated bound of
   `adapter.objective.lead_window_bounds` (the model's median peaks or the last value, plus
   their recent errors' quantile); and the last value plus its errors' quantile alone. Coverage
   (share of steps whose maximum stayed within the bound; the target is 0.9) and sharpness
   (mean bound / mean realised maximum, averaged over series), per source and pooled, for
   W = 2 and 3 (S = 1 and 2). `--lead-series N` spreads it over N series (0: skip it).
3. Inference: one `predict_batch` call for 1,000 series with 14 days of 5-minute history.
4. Loading the model folder (numpy only: serving never imports torch), and the folder's size.

    make bench-forecast            # or: python -m bench.forecast --data ../shared/data

What it must not do: let a bound or forecast made for step t read the load at t or later (the
model sees histories ending at t - 1, through `adapter.backfill.forecast_origins`), tune
anything to the traces it scores, or write files.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adapter.backfill import CHUNK, BatchForecaster, forecast_origins
from adapter.objective import CALIBRATION_STEPS, lead_window_bounds, realised_peaks
from forecaster import backtest, series as series_module
from forecaster.artifacts import default_path
from forecaster.predictor import Forecaster, load_forecaster
from forecaster.series import Series

LEAD_WINDOWS = (2, 3)
"""W = S + 1 for start-up delays of S = 1 and 2 steps (5 and 10 minutes)."""
LEAD_QUANTILE = 0.9
LEAD_DAYS = 1
"""The scored steps: the last day of each trace's evaluation span."""
LEAD_HISTORY = backtest.CONTEXT_DAYS * backtest.DAY
"""What the model reads before each origin (14 days), as in the accuracy protocol."""
LEAD_SERIES = 30
"""Default `--lead-series`: about 2 minutes of model time on 2 cores."""
BOUND_KINDS = ("model", "calibrated", "last value")
"""The bounds compared, in the order the table shows them."""


@dataclasses.dataclass(frozen=True)
class LeadScore:
    """One series at one lead window: the realised maxima and the bounds at the scored steps."""

    name: str
    window: int
    steps: np.ndarray
    """Indices of the scored steps in the series."""
    realised: np.ndarray
    """max(load[t .. t + window - 1]) per scored step t."""
    bounds: dict[str, np.ndarray]
    """Per kind of `BOUND_KINDS`, its bound per scored step."""
    model_share: float
    """Share of the scored steps whose calibrated bound came from the model."""
    fallbacks: int
    """Scored steps without a calibrated bound (too few known errors): the model's own taken."""

    @property
    def source(self) -> str:
        """The set the series belongs to: the top-level folder of its path under the data."""
        return self.name.split("/", 1)[0]

    def scored(self) -> np.ndarray:
        """The steps every bound and the realised maximum are known at (a mask)."""
        known = np.isfinite(self.realised)
        for values in self.bounds.values():
            known &= np.isfinite(values)
        return known

    def sharpness(self, kind: str) -> float:
        """mean(bound) / mean(realised maximum) over the scored steps; NaN if that is not > 0."""
        known = self.scored()
        realised = float(np.mean(self.realised[known])) if known.any() else math.nan
        if not realised > 0:
            return math.nan
        return float(np.mean(self.bounds[kind][known])) / realised


def lead_origins(length: int, windows: Sequence[int], days: int = LEAD_DAYS) -> np.ndarray:
    """The steps the model forecasts at for a series of `length` steps: from the first whose
    error the first scored step's calibration reads to the last scored step."""
    first = length - days * backtest.DAY
    return np.arange(max(1, first - CALIBRATION_STEPS - max(windows)), length - min(windows) + 1)


def lead_window_scores(
    model: BatchForecaster,
    trace: Series,
    windows: Sequence[int] = LEAD_WINDOWS,
    quantile: float = LEAD_QUANTILE,
    days: int = LEAD_DAYS,
    history_steps: int = LEAD_HISTORY,
    chunk: int = CHUNK,
) -> list[LeadScore]:
    """The three bounds of the lead-window maximum at every step of the last `days` of
    `trace`, one `LeadScore` per window.

    The model forecasts once per origin (median and `quantile`, as far as the longest window),
    from the first step the calibration of the first scored step needs
    (`CALIBRATION_STEPS` + the window before it) to the last scored one; the forecasts at
    origin t read ``load[t - history_steps : t]`` only. The median peaks handed to
    `lead_window_bounds` are those forecasts' maxima over each window, as
    `adapter.backfill.median_peaks` computes them (the model forecasts each step the same
    whatever the horizon and quantiles asked for, so one call serves every window).
    """
    load = np.asarray(trace.values, dtype=np.float64)
    length = load.size
    first = length - days * backtest.DAY
    if first < 1 or length - min(windows) < first:
        raise ValueError(f"{trace.name}: {length} steps are too few to score {days} day(s)")
    origins = lead_origins(length, windows, days)
    forecasts = forecast_origins(
        model,
        trace.timestamps,
        load,
        origins,
        history_steps,
        max(windows),
        (0.5, quantile),
        chunk,
    )
    scores = []
    for window in windows:
        median_peaks = np.full(length, np.nan)
        median_peaks[origins] = forecasts[0, :, :window].max(axis=1)
        own = np.full(length, np.nan)
        own[origins] = forecasts[1, :, :window].max(axis=1)
        steps = np.arange(first, length - window + 1)
        calibrated = lead_window_bounds(load, median_peaks, steps, window, quantiles=(quantile,))
        last_value = lead_window_bounds(
            load, np.full(length, np.nan), steps, window, quantiles=(quantile,)
        )
        calibrated_bound = calibrated.at(quantile)
        unknown = np.isnan(calibrated_bound)
        scores.append(
            LeadScore(
                name=trace.name,
                window=window,
                steps=steps,
                realised=realised_peaks(load, window)[steps],
                bounds={
                    "model": own[steps],
                    "calibrated": np.where(unknown, own[steps], calibrated_bound),
                    "last value": last_value.at(quantile),
                },
                model_share=float(calibrated.model_share[0]),
                fallbacks=int(np.sum(unknown)),
            )
        )
    return scores


@dataclasses.dataclass(frozen=True)
class LeadSummary:
    """A group of series (one source, or all pooled) at one window."""

    group: str
    series: int
    steps: int
    coverage: dict[str, float]
    """Per kind: scored steps whose realised maximum <= the bound, over all scored steps."""
    sharpness: dict[str, float]
    """Per kind: mean over the group's series of `LeadScore.sharpness` (series where it is
    undefined left out)."""
    model_share: float
    """Share of the group's scored steps whose calibrated bound came from the model."""
    fallbacks: int


def summarise_lead(scores: Sequence[LeadScore], group: str) -> LeadSummary:
    """Coverage pooled over the steps of `scores`, sharpness averaged over their series."""
    masks = [score.scored() for score in scores]
    steps = sum(int(mask.sum()) for mask in masks)
    coverage = {
        kind: sum(
            int(np.sum(score.realised[mask] <= score.bounds[kind][mask]))
            for score, mask in zip(scores, masks, strict=True)
        )
        / steps
        if steps
        else math.nan
        for kind in BOUND_KINDS
    }
    sharpness = {}
    for kind in BOUND_KINDS:
        ratios = np.array([score.sharpness(kind) for score in scores])
        sharpness[kind] = float(np.mean(ratios[np.isfinite(ratios)])) if ratios.size else math.nan
    # Bounds.model_share is over the steps given; every given step of a series without gaps is
    # scored, so weighting by the steps given is weighting by the steps scored.
    given = sum(score.steps.size for score in scores)
    share = sum(score.model_share * score.steps.size for score in scores) / given if given else 0
    return LeadSummary(
        group,
        len(scores),
        steps,
        coverage,
        sharpness,
        float(share),
        sum(score.fallbacks for score in scores),
    )


def lead_summaries(scores: Sequence[LeadScore], window: int) -> list[LeadSummary]:
    """Per source (alphabetically), then pooled, for one window."""
    chosen = [score for score in scores if score.window == window]
    sources = sorted({score.source for score in chosen})
    return [
        *(summarise_lead([s for s in chosen if s.source == source], source) for source in sources),
        summarise_lead(chosen, "pooled"),
    ]


def lead_table(scores: Sequence[LeadScore], windows: Sequence[int] = LEAD_WINDOWS) -> str:
    names = {score.name for score in scores}
    lines = [
        f"lead-window maximum, q = {LEAD_QUANTILE:g}: {len(names)} series, every step of the last "
        f"{LEAD_DAYS} day(s) of each span; bounds from data up to t - 1",
        "coverage: share of steps whose realised max <= the bound (target "
        f"{100 * LEAD_QUANTILE:g} %); sharpness: mean over series of mean(bound) / "
        "mean(realised max)",
        "model: its own q forecast, max over the window; calibrated: lead_window_bounds on the "
        "model's median peaks; last value: the same with no model",
    ]
    for window in windows:
        header = (
            f"{'W = ' + str(window) + ' (S = ' + str(window - 1) + ')':<30} {'series':>6} "
            f"{'steps':>6} "
            + " ".join(f"{'cov ' + kind:>14}" for kind in BOUND_KINDS)
            + " "
            + " ".join(f"{'sharp ' + kind:>16}" for kind in BOUND_KINDS)
            + f" {'calib from model':>16}"
        )
        lines += ["", header]
        for summary in lead_summaries(scores, window):
            lines.append(
                f"{summary.group:<30} {summary.series:>6} {summary.steps:>6} "
                + " ".join(f"{100 * summary.coverage[kind]:>13.1f}%" for kind in BOUND_KINDS)
                + " "
                + " ".join(f"{summary.sharpness[kind]:>16.3f}" for kind in BOUND_KINDS)
                + f" {100 * summary.model_share:>15.1f}%"
            )
        fallbacks = sum(score.fallbacks for score in scores if score.window == window)
        if fallbacks:
            lines.append(
                f"{fallbacks} steps had no calibrated bound (too few known errors): the model's "
                "own bound stands in"
            )
    return "\n".join(lines)


def spread(traces: Sequence[Series], count: int) -> list[Series]:
    """`count` traces spread evenly over the (name-sorted) set; all when `count` is larger."""
    if count >= len(traces):
        return list(traces)
    if count <= 0:
        return []
    picks = np.unique(np.round(np.linspace(0, len(traces) - 1, count)).astype(np.int64))
    return [traces[index] for index in picks]


def held_out_models(folder: Path, traces: Sequence[Series]) -> dict[str, Forecaster]:
    """``folder/<source>`` for every source of `traces`; a missing one is an error."""
    sources = sorted({backtest.source_of(trace.name) for trace in traces})
    missing = [source for source in sources if not (folder / source).is_dir()]
    if missing:
        raise SystemExit(f"--leave-one-out: no model folder for {', '.join(missing)} in {folder}")
    return {source: load_forecaster(folder / source) for source in sources}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--anchors", default="all")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--lead-series",
        type=int,
        default=LEAD_SERIES,
        help="series the lead-window section runs on, spread evenly over the set (0: skip it)",
    )
    parser.add_argument(
        "--leave-one-out",
        type=Path,
        help="folder of models, one per source (``<folder>/<source>``, trained without it): "
        "each trace is forecast by the model that never saw its source, and the accuracy "
        "table is printed pooled and per held-out source",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    forecaster = load_forecaster()
    load_seconds = time.perf_counter() - started
    folder = default_path()
    size = sum(path.stat().st_size for path in folder.iterdir())

    traces = backtest.prepare(series_module.read_folder(args.data))
    models: dict[str, Forecaster] = {}
    if args.leave_one_out is None:
        summaries = backtest.compare(forecaster, args.anchors, traces)
        print(backtest.table(summaries, len(traces)))
    else:
        models = held_out_models(args.leave_one_out, traces)
        summaries = backtest.compare(
            lambda trace: models[backtest.source_of(trace.name)], args.anchors, traces
        )
        print("leave one source out: each source's traces forecast by a model trained without it")
        print(backtest.table(summaries, len(traces)))
        for source, part in backtest.by_source(summaries).items():
            print(f"\nheld out: {source}")
            print(backtest.table(part, len(part[0].per_series)))

    chosen = spread(traces, args.lead_series)
    if chosen:
        began = time.perf_counter()
        lead_scores = []
        for trace in chosen:
            model = models.get(backtest.source_of(trace.name), forecaster)
            lead_scores += lead_window_scores(model, trace)
        lead_seconds = time.perf_counter() - began
        print(f"  lead windows: {lead_seconds:.0f}s", file=sys.stderr, flush=True)
        print()
        print(lead_table(lead_scores))
        forecasts = sum(lead_origins(len(trace), LEAD_WINDOWS).size for trace in chosen)
        print(
            f"lead-window section: {lead_seconds:.0f} s wall for {len(chosen)} series, "
            f"{forecasts} forecast origins ({1000 * lead_seconds / forecasts:.1f} ms each)"
        )

    rng = np.random.default_rng(0)
    length = 14 * 288
    times = 1_790_000_000 + 300 * np.arange(length, dtype=np.int64)
    phase = 2 * np.pi * np.arange(length) / 288
    histories = [
        (
            times,
            rng.uniform(1, 1e4)
            * (1.5 + np.sin(phase + rng.uniform(0, 6)))
            * (1 + 0.05 * rng.standard_normal(length)),
        )
        for _ in range(args.batch)
    ]
    forecaster.predict_batch(histories[:10], 48)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    out = forecaster.predict_batch(histories, 48, (0.1, 0.5, 0.9))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if out.shape != (args.batch, 3, 48) or not np.all(np.isfinite(out)):
        raise SystemExit("the batch forecast is malformed")
    print()
    print(
        f"inference: {args.batch} series x {length} steps (14 d at 5 min) -> 48 steps "
        f"x 3 quantiles: {wall:.2f} s wall, {cpu:.2f} s CPU "
        f"({1000 * wall / args.batch:.2f} ms per series)"
    )
    print(
        f"loading the model folder: {1000 * load_seconds:.0f} ms; "
        f"folder size {size / 1024:.0f} KiB ({size} bytes)"
    )


if __name__ == "__main__":
    main()
