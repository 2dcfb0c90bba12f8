"""`python -m forecaster predict` and `backtest` as a user runs them, on CSV files."""

from __future__ import annotations

import csv
import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

STEP = 300


def write_trace(path: Path, days: float, iso: bool = False, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    times = 1_790_000_000 - 1_790_000_000 % STEP + STEP * np.arange(int(days * 288))
    values = 50 * (1.5 + np.sin(2 * np.pi * times / 86400)) + rng.normal(0, 1, len(times))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if iso:
            writer.writerow(["TimeStamp", "Value", "Label"])
            for stamp, value in zip(times, values, strict=True):
                moment = datetime.datetime.fromtimestamp(int(stamp), datetime.UTC)
                writer.writerow([moment.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{value:.4f}", 0])
        else:
            writer.writerow(["ts", "value"])
            writer.writerows(
                [int(stamp), f"{value:.4f}"] for stamp, value in zip(times, values, strict=True)
            )


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forecaster", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_predict_writes_json_with_the_method_and_ordered_quantiles(tmp_path: Path) -> None:
    write_trace(tmp_path / "trace.csv", 5)
    done = run(
        "predict", "--input", str(tmp_path / "trace.csv"), "--horizon", "12", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["method"] == "model"
    assert result["step_seconds"] == STEP
    assert len(result["timestamps"]) == 12
    rows = [result["quantiles"][q] for q in ("0.1", "0.5", "0.9")]
    assert all(a <= b <= c for a, b, c in zip(*rows, strict=True))


def test_predict_writes_csv_and_reads_iso_timestamps(tmp_path: Path) -> None:
    write_trace(tmp_path / "iso.csv", 1.2, iso=True)
    out = tmp_path / "forecast.csv"
    done = run(
        "predict",
        "--input",
        str(tmp_path / "iso.csv"),
        "--quantiles",
        "0.05,0.5,0.95",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "timestamp,q0.05,q0.5,q0.95"
    assert len(lines) == 49


def test_predict_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("when,what\n1,2\n3,4\n")
    done = run("predict", "--input", str(tmp_path / "bad.csv"))
    assert done.returncode == 1
    assert "expected a time column" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("empty", [False, True])
def test_backtest_names_a_missing_or_empty_folder(tmp_path: Path, empty: bool) -> None:
    folder = tmp_path / "traces"
    if empty:
        folder.mkdir()
    done = run("backtest", str(folder))
    assert done.returncode == 1
    assert f"{folder}: {'no CSV files' if empty else 'no such folder'}" in done.stderr
    assert "Traceback" not in done.stderr


def test_backtest_prints_the_table_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for seed in range(2):
        write_trace(tmp_path / "data" / f"svc-{seed}.csv", 5, seed=seed)
    png = tmp_path / "plot.png"
    done = run(
        "backtest",
        str(tmp_path / "data"),
        "--per-series",
        "--plot",
        "svc-1",
        "--plot-out",
        str(png),
    )
    assert done.returncode == 0, done.stderr
    assert "2 series on a 5-minute grid" in done.stdout
    header, *rows = [
        line
        for line in done.stdout.splitlines()
        if line.split()[:1] in (["method"], ["model"], ["last-value"], ["seasonal-naive"])
    ]
    assert header.split()[:3] == ["method", "relMASE", "1h"]
    assert [row.split()[0] for row in rows] == ["model", "last-value", "seasonal-naive"]
    assert float(rows[0].split()[1]) < 1.0  # the model beats "same time yesterday" on a clean cycle
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
