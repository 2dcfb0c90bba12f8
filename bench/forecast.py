"""Forecasting benchmark: accuracy against the anchors, in one run, and the costs.

1. The evaluation protocol (`forecaster.backtest`) on every trace under `--data` that has a
   step of 5 minutes or finer, for the pretrained model and the anchors (last value, daily
   seasonal naive, Holt-Winters, MSTL + AutoETS), measured now, side by side.
2. Inference: one `predict_batch` call for 1,000 series with 14 days of 5-minute history.
3. Loading the model folder (after torch is imported), and the folder's size.

    make bench-forecast            # or: python -m bench.forecast --data ../shared/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from forecaster import backtest, series as series_module
from forecaster.artifacts import default_path
from forecaster.predictor import load_forecaster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--anchors", default="all")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    started = time.perf_counter()
    forecaster = load_forecaster()
    load_seconds = time.perf_counter() - started
    folder = default_path()
    size = sum(path.stat().st_size for path in folder.iterdir())

    traces = backtest.prepare(series_module.read_folder(args.data))
    summaries = backtest.compare(forecaster, args.anchors, traces)
    print(backtest.table(summaries, len(traces)))

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
        f"loading the model folder: {1000 * load_seconds:.0f} ms (torch already imported); "
        f"folder size {size / 1024:.0f} KiB ({size} bytes)"
    )


if __name__ == "__main__":
    main()
