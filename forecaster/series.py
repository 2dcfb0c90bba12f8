"""Series on a regular grid: checking caller input, reading CSV traces, resampling.

A `Series` is timestamps (int64 unix seconds, evenly spaced) and float64 values (NaN for
gaps). Callers of the public API pass exactly that; CSV traces (the dev data, `predict`'s
input) are read here in the two layouts the project meets:

- ``ts,value`` with unix seconds (Crane's traces, Prometheus exports);
- ``TimeStamp,Value[,Label]`` with ISO 8601 times (Microsoft's cloud monitoring dataset);

plus ``timestamp,value``. Irregular CSV timestamps are put on the grid of their median step.
This module does file I/O only in `read_csv` / `read_folder`; nothing else touches files.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forecaster.errors import InvalidSeries

_TIME_COLUMNS = ("ts", "timestamp", "time")
_VALUE_COLUMNS = ("value",)


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    timestamps: np.ndarray
    values: np.ndarray

    @property
    def step(self) -> int:
        return int(self.timestamps[1] - self.timestamps[0]) if len(self.timestamps) > 1 else 0

    def __len__(self) -> int:
        return len(self.values)

    def head(self, length: int) -> Series:
        return Series(self.name, self.timestamps[:length], self.values[:length])


def regular(
    timestamps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Check caller input: (timestamps int64, values float64, step seconds)."""
    times = np.asarray(timestamps)
    data = np.asarray(values, dtype=np.float64)
    if times.ndim != 1 or data.ndim != 1:
        raise InvalidSeries("timestamps and values must be one-dimensional")
    if len(times) != len(data):
        raise InvalidSeries(f"{len(times)} timestamps but {len(data)} values")
    if len(times) < 2:
        raise InvalidSeries("at least two points are needed to know the step")
    if not np.issubdtype(times.dtype, np.integer) and (
        not np.all(np.isfinite(times)) or np.any(np.mod(times, 1) != 0)
    ):
        raise InvalidSeries("timestamps must be whole unix seconds")
    times = times.astype(np.int64)
    steps = np.diff(times)
    step = int(steps[0])
    if step <= 0 or np.any(steps != step):
        raise InvalidSeries(
            "timestamps must be evenly spaced and increasing (put missing points in as NaN)"
        )
    if np.any(np.isinf(data)):
        raise InvalidSeries("values must be finite numbers or NaN")
    return times, data, step


def on_grid(timestamps: np.ndarray, values: np.ndarray, step: int, name: str = "") -> Series:
    """Mean of the values in each `step`-second bucket (aligned to the epoch); NaN if empty."""
    order = np.argsort(timestamps, kind="stable")
    timestamps, values = timestamps[order], values[order]
    start = int(timestamps[0]) - int(timestamps[0]) % step
    index = (timestamps - start) // step
    size = int(index[-1]) + 1
    observed = ~np.isnan(values)
    totals = np.zeros(size)
    counts = np.zeros(size)
    np.add.at(totals, index[observed], values[observed])
    np.add.at(counts, index[observed], 1)
    means = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
    return Series(name, start + np.arange(size, dtype=np.int64) * step, means)


def resample(series: Series, step: int) -> Series:
    """The same series on a coarser grid (mean per bucket)."""
    if step == series.step:
        return series
    if step < series.step:
        raise InvalidSeries(f"cannot resample {series.name} from {series.step}s down to {step}s")
    return on_grid(series.timestamps, series.values, step, series.name)


def read_csv(path: Path, name: str | None = None) -> Series:
    """A trace from a CSV file with a time column and a value column (see module docs)."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 3:
        raise InvalidSeries(f"{path}: fewer than two data rows")
    header = [column.strip().lower() for column in rows[0]]
    try:
        time_column = next(i for i, column in enumerate(header) if column in _TIME_COLUMNS)
        value_column = next(i for i, column in enumerate(header) if column in _VALUE_COLUMNS)
    except StopIteration:
        raise InvalidSeries(
            f"{path}: expected a time column ({', '.join(_TIME_COLUMNS)}) and a 'value' column, "
            f"found {rows[0]}"
        ) from None
    times, values = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            times.append(_parse_time(row[time_column]))
            values.append(float(row[value_column]) if row[value_column].strip() else np.nan)
        except (ValueError, IndexError) as exc:
            raise InvalidSeries(f"{path}:{number}: {exc}") from exc
    stamps = np.asarray(times, dtype=np.int64)
    steps = np.diff(np.sort(stamps))
    positive = steps[steps > 0]
    if len(positive) == 0:
        raise InvalidSeries(f"{path}: all timestamps are equal")
    step = int(np.median(positive))
    return on_grid(stamps, np.asarray(values, dtype=np.float64), step, name or path.stem)


MANIFEST = "manifest.csv"
"""The file that describes a set of traces (one row per trace), beside them: not a trace."""


def read_folder(folder: Path) -> list[Series]:
    """Every trace CSV below `folder`, named by its path relative to it (without the suffix);
    the sets' `MANIFEST` files are skipped."""
    if not folder.is_dir():
        raise InvalidSeries(f"{folder}: no such folder")
    paths = sorted(path for path in folder.rglob("*.csv") if path.name != MANIFEST)
    if not paths:
        raise InvalidSeries(f"{folder}: no CSV files")
    return [read_csv(path, str(path.relative_to(folder).with_suffix(""))) for path in paths]


def _parse_time(text: str) -> int:
    text = text.strip().strip('"')
    try:
        return int(float(text))
    except ValueError:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return int(moment.timestamp())
