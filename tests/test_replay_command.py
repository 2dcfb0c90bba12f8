"""`predictive-metrics-adapter replay` on synthetic CSVs with the shipped model: the table of
the three policies, the plots, the sweep's frontier, an objective that cannot be met, bad
input; and the replay's predictive counts against what the live planner serves.

The main series: 5 days at 5 minutes, a daily cycle with noise, and a burst of 2.5 times the
load for half an hour on the last day (the replayed range is the last 3 days).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from adapter import objective, planning, whatif
from apiservice.__main__ import main
from forecaster import Forecaster, load_forecaster

STEP = 300
DAY = 86400
START = 1_767_225_600  # 2026-01-01 00:00 UTC
BURST = 4 * 288 + 120  # day 5, 10:00
BURST_STEPS = 6
PER_POD = "20"


def daily_load(days: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    count = days * 288
    times = START + STEP * np.arange(count, dtype=np.int64)
    hours = (times % DAY) / 3600
    rng = np.random.default_rng(seed)
    load = 200 + 150 * np.cos(2 * np.pi * (hours - 15) / 24) + rng.normal(0, 6, count)
    return times, load


def write_csv(path: Path, times: np.ndarray, load: np.ndarray) -> Path:
    rows = "".join(f"{t},{v:.3f}\n" for t, v in zip(times.tolist(), load.tolist(), strict=True))
    path.write_text("ts,value\n" + rows)
    return path


def replay(*args: str) -> tuple[int, str, str]:
    """The command in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["replay", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def table(text: str) -> dict[str, list[str]]:
    """The policy table's rows by policy family: the cells after the name."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("policy "))
    rows = {}
    for line in lines[header + 1 : header + 4]:
        family = line.split(" (")[0]
        rows[family] = line.split()[-6:]
    return rows


@pytest.fixture(scope="module")
def burst_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    times, load = daily_load(5)
    load[BURST : BURST + BURST_STEPS] *= 2.5
    return write_csv(tmp_path_factory.mktemp("replay") / "burst.csv", times, load)


@pytest.fixture(scope="module")
def model() -> Forecaster:
    return load_forecaster()


@pytest.fixture(scope="module")
def command(burst_csv: Path) -> tuple[str, Path]:
    """One run of the command with --plot and --sweep: its output and the plot's path."""
    plot = burst_csv.with_name("replay.png")
    code, out, err = replay(
        "--csv", str(burst_csv), "--per-pod", PER_POD, "--plot", str(plot), "--sweep"
    )
    assert code == 0, err
    return out, plot


@pytest.mark.timeout(300)
def test_the_table_has_the_three_policies_and_the_oracle_is_never_short(
    command: tuple[str, Path],
) -> None:
    out, _ = command
    rows = table(out)
    assert list(rows) == ["reactive HPA", "predictive", "oracle"]
    above, unserved, _, vs_reactive, vs_oracle, _ = rows["oracle"]
    assert (above, unserved) == ("0.000%", "0.000%")
    assert float(vs_oracle) == 1.0
    assert float(rows["reactive HPA"][3]) == 1.0
    assert float(rows["reactive HPA"][0].rstrip("%")) > 0  # the burst
    assert "864 steps of 5m, 2026-01-03 00:00 .. 2026-01-06 00:00 UTC" in out
    assert "Predictive setting (the manual quantile): q=0.9 u_f=1 u_r=none" in out


@pytest.mark.timeout(300)
def test_the_reactive_hpa_is_short_at_the_burst_and_the_oracle_never(
    burst_csv: Path, model: Forecaster
) -> None:
    outcome = whatif.run_replay(
        whatif.CsvInput(burst_csv, per_pod=float(PER_POD)), whatif.ReplayOptions(), model=model
    )
    report = outcome.report
    burst = int(np.flatnonzero(report.times == START + BURST * STEP)[0])
    # One step of metric lag and two of start-up: the reactive pods come too late.
    assert report.reactive.short[burst : burst + BURST_STEPS].any()
    assert not report.reactive.short[: burst - 60].all()
    assert not report.oracle.short.any()
    assert report.oracle.scores.time_above_capacity == 0.0
    assert report.oracle.scores.pod_hours > 0
    assert outcome.sweep is None


@pytest.mark.timeout(300)
def test_the_plots_are_written_at_the_stated_size(command: tuple[str, Path]) -> None:
    out, plot = command
    sweep_plot = plot.with_name("replay-sweep.png")
    assert f"wrote {plot} (1600x900 px)" in out
    assert f"wrote {sweep_plot} (1600x900 px)" in out
    for path in (plot, sweep_plot):
        image = matplotlib.image.imread(path)
        assert image.shape[:2] == (900, 1600)
        assert np.ptp(image[..., :3]) > 0.5  # drawn on, not a blank canvas


@pytest.mark.timeout(300)
def test_the_sweep_prints_the_frontier(command: tuple[str, Path]) -> None:
    out, _ = command
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Frontier: "))
    points = [line for line in lines[start + 2 :] if line[:1] in "* " and line.strip()]
    points = [line for line in points if not line.startswith("wrote ")]
    families = [line[2:].split("  ")[0].strip() for line in points]
    assert families.count("predictive") == len(objective.SETTINGS)
    assert families.count("reactive HPA") == 5
    assert families.count("configured") == 1
    assert families[-1] == "oracle"
    on_frontier = [line for line in points if line.startswith("*")]
    assert on_frontier
    # Sorted by cost; the frontier's time above capacity falls as its cost rises.
    costs = [float(line.split()[-3]) for line in points[:-1]]
    assert costs == sorted(costs)
    frontier_above = [float(line.split()[-2].rstrip("%")) for line in on_frontier]
    assert frontier_above == sorted(frontier_above, reverse=True)


@pytest.mark.timeout(300)
def test_an_objective_that_cannot_be_met_is_reported(tmp_path: Path) -> None:
    times, load = daily_load(5, seed=2)
    spikes = np.random.default_rng(3).random(load.size) < 0.015
    load[spikes] *= 3  # rare tripled steps: no setting's bound both covers and skips them
    csv = write_csv(tmp_path / "spiky.csv", times, load)
    code, out, err = replay("--csv", str(csv), "--per-pod", PER_POD, "--objective", "0%")
    assert code == 0, err
    assert "Objective: at most 0% of the time above capacity." in out
    assert "the objective (at most 0% of the time above capacity) cannot be met" in out
    assert "the objective was NOT met" in out


def test_a_met_objective_is_reported_with_its_expected_figures(
    tmp_path: Path, model: Forecaster
) -> None:
    times, load = daily_load(6)
    csv = write_csv(tmp_path / "daily.csv", times, load)
    given = whatif.CsvInput(csv, per_pod=20.0, days=1, objective=objective.Objective(0.05))
    outcome = whatif.run_replay(given, whatif.ReplayOptions(), model=model)
    tunings = outcome.report.tunings  # as the replay starts, and a day later
    assert [t.time for t in tunings] == [times[-288 - 12], times[-12]]
    for tuning in tunings:
        assert tuning.choice is not None
        assert tuning.choice.met
        assert tuning.setting == tuning.choice.setting
        assert f"{tuning.choice.reason}\n" in outcome.text
    assert "the objective was met" in outcome.text


def test_an_objective_with_headroom_is_tuned_and_judged_against_its_share(
    tmp_path: Path, model: Forecaster
) -> None:
    times, load = daily_load(6)
    csv = write_csv(tmp_path / "daily.csv", times, load)
    goal = objective.Objective(0.05, headroom=0.2)
    given = whatif.CsvInput(csv, per_pod=20.0, days=1, objective=goal)
    outcome = whatif.run_replay(given, whatif.ReplayOptions(), model=model)
    assert "Objective: at most 5% of the time above 80% of capacity." in outcome.text
    for tuning in outcome.report.tunings:
        assert tuning.choice is not None
        assert tuning.choice.expected is not None
        assert tuning.choice.expected.time_above(0.8) <= 0.05
        assert "above 80% of it)" in tuning.choice.reason
    scores = outcome.report.predictive.scores
    above = scores.time_above(0.8)
    assert above >= scores.time_above_capacity
    assert f"above 80% of capacity {100 * above:.3f}% of the time" in outcome.text


BAD_CSVS = {
    "empty": ("", "empty.csv holds no ts,value rows"),
    "header only": ("ts,value\n", "holds no ts,value rows"),
    "not a number": ("ts,value\n1767225600,12\n1767225900,twelve\n", "line 3"),
    "negative": ("ts,value\n1767225600,12\n1767225900,-1\n", "not negative"),
    "too few steps": (
        "".join(f"{START + STEP * i},{10 + i % 7}\n" for i in range(870)),
        "needs at least 877",
    ),
    "not increasing": ("1767225900,1\n1767225600,2\n", "timestamps must increase"),
}


@pytest.mark.parametrize("name", BAD_CSVS)
def test_bad_csv_input_is_one_clear_line_and_exit_2(tmp_path: Path, name: str) -> None:
    text, expected = BAD_CSVS[name]
    path = tmp_path / ("empty.csv" if name == "empty" else "data.csv")
    path.write_text(text)
    code, out, err = replay("--csv", str(path), "--per-pod", "10")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert expected in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["give --csv FILE (with --per-pod) or --config FILE"]),
        (
            ["--csv", "x.csv", "--target", "a/b", "--from", "0"],
            ["--target applies to --config", "--from applies to --config", "needs --per-pod"],
        ),
        (
            ["--config", "c.yaml", "--per-pod", "3", "--days", "2", "--target", "a/b"],
            ["--days applies to --csv", "--per-pod applies to --csv", "needs --from, --to"],
        ),
        (["--csv", "x.csv", "--config", "c.yaml"], ["give --csv or --config, not both"]),
        (
            ["--csv", "x.csv", "--quantile", "2", "--safety-net", "0"],
            ["needs --per-pod", "--quantile must be 0.05..0.95", "--safety-net must be"],
        ),
        (
            ["--config", "c.yaml", "--prometheus-ca-file", "missing.pem"],
            ["needs --target, --from, --to", "--prometheus-ca-file: missing.pem does not exist"],
        ),
        (
            ["--csv", "x.csv", "--per-pod", "0", "--quantile", "0.99", "--sweep-plot", "s.png"],
            ["--per-pod must be a positive", "--quantile must be", "--sweep-plot needs --sweep"],
        ),
        (["--csv", "x.csv", "--per-pod", "1", "--prometheus-url", "h"], ["--prometheus-url"]),
        (["--csv", "x.csv", "--per-pod", "1", "--lead-time", "soon"], ["invalid duration"]),
        (["--csv", "x.csv", "--per-pod", "1", "--objective", "lots"], ["not a percentage"]),
        (
            ["--csv", "x.csv", "--per-pod", "1", "--headroom", "10%"],
            ["--headroom needs --objective"],
        ),
        (
            ["--csv", "x.csv", "--per-pod", "1", "--objective", "1%", "--headroom", "60%"],
            ["--headroom: '60%' is outside 0%..50%"],
        ),
    ],
)
def test_flags_of_the_wrong_kind_are_refused_all_at_once(
    args: Sequence[str], expected: Sequence[str]
) -> None:
    code, out, err = replay(*args)
    assert code == 2
    assert out == ""
    (line,) = [line for line in err.splitlines() if "error:" in line]
    for part in expected:
        assert part in line, line


def test_the_installed_command_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "apiservice", "replay", "--csv", str(path), "--per-pod", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "error: empty.csv holds no ts,value rows\n"


@pytest.mark.timeout(300)
def test_the_predictive_counts_are_what_the_live_planner_serves(
    burst_csv: Path, model: Forecaster
) -> None:
    """At sampled replayed steps, `adapter.planning.plan` (the refresher's) given the history
    window, the peak log and a fresh forecast serves the replay's count; with an objective,
    `planning.tune` on the same window chooses the replay's setting."""
    given = whatif.CsvInput(burst_csv, per_pod=20.0, days=1, objective=objective.Objective(0.02))
    series, target = whatif.load_input(given)
    report = whatif.replay(series, target, model, whatif.ReplayOptions())
    peaks = report.prepared.median_peaks
    history = target.history // target.step
    quantiles = tuple(sorted({0.5, *objective.QUANTILES, target.quantile}))
    assert len(report.tunings) == 2
    for tuning in report.tunings:
        low = max(0, tuning.begin - history)
        live = planning.tune(target, series.load[low : tuning.begin], peaks[low : tuning.begin])
        assert live == tuning.choice
        assert live.setting == tuning.setting
    served = report.predictive.served
    assert served is not None
    for at in range(series.start, series.load.size, 9):
        setting = [t.setting for t in report.tunings if t.begin <= at][-1]
        low = max(0, at - history)
        times, load = series.times[low:at], series.load[low:at]
        forecasts = model.forecast_batch([(times, load)], 48, quantiles)
        sizing = planning.Sizing(setting, load, peaks[low:at])
        plan = planning.plan(
            target, forecasts, quantiles, steps=1, usage=None, fit=None, sizing=sizing
        )
        assert plan.replicas == served[at - series.start], at


@pytest.mark.timeout(300)
def test_no_count_reads_the_load_of_its_step_or_later(
    burst_csv: Path, model: Forecaster, tmp_path: Path
) -> None:
    """Two series equal up to a step: every count served and every setting chosen up to that
    step is the same (only the oracle knows the future)."""
    times, load = daily_load(5)
    cut = load.size - 100
    changed = load.copy()
    changed[cut:] *= 3
    counts, settings, starts = [], [], []
    for values in (load, changed):
        given = whatif.CsvInput(
            write_csv(tmp_path / "s.csv", times, values),
            per_pod=20.0,
            days=1,
            objective=objective.Objective(0.02),
        )
        series, target = whatif.load_input(given)
        report = whatif.replay(series, target, model, whatif.ReplayOptions())
        assert report.predictive.served is not None
        counts.append(report.predictive.served)
        settings.append([(t.begin, t.setting) for t in report.tunings if t.begin <= cut])
        starts.append(series.start)
    before = cut - starts[0] + 1  # the count of step `cut` reads up to cut - 1
    assert np.array_equal(counts[0][:before], counts[1][:before])
    assert not np.array_equal(counts[0][before:], counts[1][before:])
    assert settings[0] == settings[1]
    assert settings[0]  # the tuning as the replay starts, at least
