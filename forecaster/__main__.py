"""``python -m forecaster {train,predict,backtest}``.

python -m forecaster train --data ../shared/data --out forecaster/default
python -m forecaster train --init forecaster/default --data my-traces/ --out tuned/ \
        --max-cpu-seconds 120
python -m forecaster predict --input trace.csv --horizon 48 --format json
python -m forecaster backtest ../shared/data --anchors all --plot crane/input1 --plot-out input1.png
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forecaster import backtest, series as series_module
from forecaster.config import ModelConfig
from forecaster.errors import ForecasterError
from forecaster.predictor import Forecaster, load_forecaster


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecaster", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(required=True, metavar="command")

    train = sub.add_parser(
        "train", help="train a model folder (from scratch, or fine-tune with --init)"
    )
    train.add_argument("--data", type=Path, required=True, help="folder of CSV traces")
    train.add_argument("--out", type=Path, required=True, help="model folder to write")
    train.add_argument("--init", type=Path, help="fine-tune this model folder instead")
    train.add_argument("--max-cpu-seconds", type=float, default=60.0, help="fine-tuning bound")
    train.add_argument("--samples", type=int, help="training windows (default from the config)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--tz-offset-hours", type=float, help="local time for calendar features")
    train.set_defaults(run=_train)

    predict = sub.add_parser("predict", help="forecast one CSV trace")
    predict.add_argument("--input", type=Path, required=True)
    predict.add_argument("--model", type=Path, help="model folder (default: the pretrained one)")
    predict.add_argument("--horizon", type=int, default=48)
    predict.add_argument("--quantiles", default="0.1,0.5,0.9")
    predict.add_argument("--format", choices=("csv", "json"), default="csv")
    predict.add_argument("--output", type=Path, help="file to write (default: stdout)")
    predict.set_defaults(run=_predict)

    back = sub.add_parser("backtest", help="the evaluation protocol on a folder of CSV traces")
    back.add_argument("data", type=Path)
    back.add_argument("--model", type=Path, help="model folder (default: the pretrained one)")
    back.add_argument(
        "--anchors",
        default="last-value,seasonal-naive",
        help="comma list of anchors, 'all' or 'none'",
    )
    back.add_argument("--per-series", action="store_true", help="also print each series' scores")
    back.add_argument("--plot", help="series name to plot (as printed with --per-series)")
    back.add_argument("--plot-out", type=Path, default=Path("backtest.png"))
    back.set_defaults(run=_backtest)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ForecasterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace) -> int:
    try:
        from forecaster import training  # torch, from the train extra: only this command needs it
    except ImportError as exc:
        if exc.name != "torch":
            raise
        print("error: training needs torch: install the `train` extra", file=sys.stderr)
        return 1

    if args.init is not None:
        base = load_forecaster(args.init)
        traces = (
            series_module.read_folder(args.data)
            if args.data.is_dir()
            else [series_module.read_csv(args.data)]
        )
        print(
            f"fine-tuning {args.init} on {len(traces)} trace(s), "
            f"at most {args.max_cpu_seconds:.0f} CPU seconds"
        )
        tuned = base.fine_tune([(t.timestamps, t.values) for t in traces], args.max_cpu_seconds)
        tuned.save(args.out)
        print(f"wrote {args.out}")
        return 0
    overrides = {
        key: value
        for key, value in {
            "training_samples": args.samples,
            "epochs": args.epochs,
            "seed": args.seed,
            "tz_offset_seconds": round(args.tz_offset_hours * 3600)
            if args.tz_offset_hours is not None
            else None,
        }.items()
        if value is not None
    }
    config = dataclasses.replace(ModelConfig(), **overrides)
    started = time.perf_counter()
    model, items = training.train(args.data, config, progress=lambda line: print(line, flush=True))
    Forecaster(training.to_network(model, config), config, items, str(args.out)).save(args.out)
    size = sum(path.stat().st_size for path in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {time.perf_counter() - started:.0f}s")
    return 0


def _predict(args: argparse.Namespace) -> int:
    trace = series_module.read_csv(args.input)
    quantiles = [float(q) for q in args.quantiles.split(",")]
    forecaster = load_forecaster(args.model)
    result = forecaster.forecast(trace.timestamps, trace.values, args.horizon, quantiles)
    times = result.first_timestamp + result.step_seconds * np.arange(args.horizon)
    if args.format == "json":
        text = json.dumps(
            {
                "method": result.method,
                "step_seconds": result.step_seconds,
                "timestamps": times.tolist(),
                "quantiles": {
                    str(q): row.tolist() for q, row in zip(quantiles, result.values, strict=True)
                },
            }
        )
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["timestamp", *(f"q{q}" for q in quantiles)])
        for column, stamp in enumerate(times):
            writer.writerow([int(stamp), *(f"{row[column]:.6g}" for row in result.values)])
        text = buffer.getvalue()
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    traces = backtest.prepare(series_module.read_folder(args.data))
    forecaster = load_forecaster(args.model)
    summaries = backtest.compare(forecaster, args.anchors, traces)
    print(backtest.table(summaries, len(traces)))
    if args.per_series:
        print(
            f"\n{'series':<48}"
            + "".join(f"{s.method[:14]:>16}" for s in summaries)
            + "   (relMASE 1h/4h)"
        )
        for row, trace in enumerate(traces):
            cells = "".join(
                f"{s.per_series[row].relative(12):>8.2f}/{s.per_series[row].relative(48):<7.2f}"
                for s in summaries
            )
            print(f"{trace.name:<48}{cells}")
    if args.plot:
        _plot(args, forecaster, traces)
    return 0


def _plot(
    args: argparse.Namespace, forecaster: Forecaster, traces: list[series_module.Series]
) -> None:
    from forecaster.plotting import plot_forecast

    matches = [t for t in traces if t.name == args.plot]
    if not matches:
        raise SystemExit(f"no series named {args.plot!r}; see --per-series for the names")
    trace = matches[0]
    origin = backtest.origins(len(trace))[-1]
    start = max(0, origin - backtest.CONTEXT_DAYS * backtest.DAY)
    horizon = max(backtest.HORIZONS)
    quantiles = forecaster.predict(
        trace.timestamps[start:origin], trace.values[start:origin], horizon, (0.1, 0.5, 0.9)
    )
    plot_forecast(
        args.plot_out,
        f"{trace.name}: forecast from the last origin",
        trace.timestamps[start:origin],
        trace.values[start:origin],
        trace.timestamps[origin : origin + horizon],
        quantiles,
        trace.values[origin : origin + horizon],
    )
    print(f"wrote {args.plot_out}")


if __name__ == "__main__":
    sys.exit(main())
