"""What an accuracy target asks of the traces: scores of forecasts that read the future.

The accuracy protocol of `forecaster.backtest` (same origins, horizons, scaling and relative
MASE: geometric mean over series of MASE / daily-seasonal-naive MASE), pooled and per source,
for forecasts no forecaster can make, because each is chosen or built after seeing what
happened:

- every candidate of the model's bank alone (`forecaster.features.bank`; these are causal);
- **best candidate per series**: for each series and horizon, the one candidate with the lowest
  error over the whole evaluation span, picked afterwards. A model that weights the candidates
  can beat it (it mixes them and changes its weights at every origin);
- **best candidate per forecast**: at each origin and horizon, the candidate that turned out
  best. Only a perfect selector reaches it: the bound of any method that picks among the bank;
- **the future, smoothed**: at each step the mean of the actual values within W steps either
  side (W = 2 and 6: 25 and 65 minutes of traffic). What a forecaster that knew the traffic's
  shape to that resolution, and none of its faster noise, would score.

A target pooled relative MASE is only within reach when it lies well above the per-forecast
line; where it sits near the smoothed future, it asks for knowledge of the future.

    make bench-ceiling             # or: python -m bench.ceiling --data ../shared/data

What it must not do: pass for a forecast (nothing below the single candidates is causal), or
change the protocol it measures against (it reads `forecaster.backtest`'s constants).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forecaster import backtest, features, series as series_module
from forecaster.config import ModelConfig
from forecaster.predictor import load_forecaster
from forecaster.series import Series

SMOOTHING = (2, 6)
"""Half-widths W, in steps, of the smoothed-future rows (25 and 65 minutes at 5 minutes)."""
PER_SERIES = "best candidate per series"
PER_FORECAST = "best candidate per forecast"
FUTURE = "the future, smoothed over"


@dataclasses.dataclass
class SeriesCeiling:
    """One series: mean scaled errors per row and horizon, and the naive method's."""

    name: str
    errors: dict[str, dict[int, float]]
    naive: dict[int, float]


def smoothed_future(values: np.ndarray, origin: int, horizon: int, width: int) -> np.ndarray:
    """At each step origin .. origin + horizon - 1, the mean of the observed values within
    `width` steps either side (NaN where none is observed)."""
    out = np.full(horizon, np.nan)
    for step in range(horizon):
        at = origin + step
        window = values[max(0, at - width) : at + width + 1]
        if np.any(~np.isnan(window)):
            out[step] = float(np.nanmean(window))
    return out


def measure(trace: Series, config: ModelConfig, widths: Sequence[int] = SMOOTHING) -> SeriesCeiling:
    """Every row's errors on one trace (a trace on the protocol's 5-minute grid)."""
    horizon = max(backtest.HORIZONS)
    rows: dict[str, dict[int, list[float]]] = {}
    naive: dict[int, list[float]] = {h: [] for h in backtest.HORIZONS}

    def add(row: str, h: int, error: float) -> None:
        rows.setdefault(row, {k: [] for k in backtest.HORIZONS})[h].append(error)

    for window in backtest.windows(trace):
        made = features.bank(
            window.context[None, :].astype(np.float64), window.context.size, backtest.STEP, config
        )
        forecasts = {name: made[name][0] for name in config.candidates}
        future = {
            f"{FUTURE} +-{width} steps": smoothed_future(
                trace.values, window.origin, horizon, width
            )
            for width in widths
        }
        seasonal = backtest.seasonal_naive(window.context, horizon)
        seen = ~np.isnan(window.actual)
        for h in backtest.HORIZONS:
            if not seen[:h].any():
                continue
            naive[h].append(backtest.scaled_error(seasonal, window, h))
            candidate_errors = {
                name: backtest.scaled_error(f, window, h) for name, f in forecasts.items()
            }
            for name, value in candidate_errors.items():
                add(name, h, value)
            add(PER_FORECAST, h, min(candidate_errors.values()))
            for name, f in future.items():
                add(name, h, backtest.scaled_error(f, window, h))
    errors = {
        row: {h: float(np.mean(v)) for h, v in by_h.items() if v} for row, by_h in rows.items()
    }
    errors[PER_SERIES] = {
        h: min(errors[name][h] for name in config.candidates if h in errors[name])
        for h in backtest.HORIZONS
        if any(h in errors[name] for name in config.candidates)
    }
    return SeriesCeiling(trace.name, errors, {h: float(np.mean(v)) for h, v in naive.items() if v})


def relative(ceilings: Sequence[SeriesCeiling], row: str, h: int) -> float:
    """Geometric mean over series of the row's MASE / the naive MASE (floored as the
    protocol floors it)."""
    ratios = [
        c.errors[row][h] / c.naive[h]
        for c in ceilings
        if h in c.errors.get(row, {}) and c.naive.get(h, 0) > 0
    ]
    return backtest.geometric_mean(ratios) if ratios else float("nan")


def table(ceilings: Sequence[SeriesCeiling], title: str) -> str:
    rows = list(dict.fromkeys(row for c in ceilings for row in c.errors))
    hindsight = [PER_SERIES, PER_FORECAST]
    future = [row for row in rows if row.startswith(FUTURE)]
    ordered = [row for row in rows if row not in hindsight + future] + hindsight + future
    labels = [backtest.horizon_label(h) for h in backtest.HORIZONS]
    lines = [
        f"{title}: {len(ceilings)} series",
        f"{'relative MASE at':44s}" + "".join(f"{label:>9s}" for label in labels),
    ]
    for row in ordered:
        lines.append(
            f"{row:44s}" + "".join(f"{relative(ceilings, row, h):9.3f}" for h in backtest.HORIZONS)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="model folder whose candidate bank is used")
    args = parser.parse_args()
    config = load_forecaster(args.model).config
    traces = backtest.prepare(series_module.read_folder(args.data))
    began = time.perf_counter()
    ceilings = [measure(trace, config) for trace in traces]
    print(f"  measured in {time.perf_counter() - began:.0f}s", file=sys.stderr, flush=True)
    print(table(ceilings, "pooled"))
    for source in sorted({backtest.source_of(c.name) for c in ceilings}):
        print()
        print(table([c for c in ceilings if backtest.source_of(c.name) == source], source))


if __name__ == "__main__":
    main()
