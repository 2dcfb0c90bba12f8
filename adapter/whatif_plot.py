"""PNGs of a what-if replay (`adapter.whatif`): the load against each policy's ready capacity,
and a sweep's cost/shortfall frontier. Needs the ``plot`` extra (matplotlib).

Both figures are `WIDTH` x `HEIGHT` pixels, whatever is drawn. matplotlib is imported inside
the functions, with the Agg backend, so that the adapter runs without it.

What it must not do: replay, forecast or read anything; it draws what a `Report` or a `Sweep`
holds and writes one file per call.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from adapter.whatif import BASELINE, Report, Sweep, WhatIfError

__all__ = ["DPI", "HEIGHT", "WIDTH", "plot_frontier", "plot_replay"]

WIDTH, HEIGHT, DPI = 1600, 900, 100
"""Every figure: 1600 x 900 pixels (16 x 9 inches at 100 dpi)."""
_COLOURS = ("tab:orange", "tab:blue", "tab:green")


def plot_replay(path: Path, report: Report) -> tuple[int, int]:
    """The load, each policy's ready capacity (ready pods x per pod) per step, and below it
    the steps where each policy was short; the PNG's size in pixels."""
    plt = _pyplot()
    assert report.target.capacity is not None
    per_pod = report.target.capacity.per_pod
    when = [datetime.datetime.fromtimestamp(int(t), datetime.UTC) for t in report.times]
    figure, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(WIDTH / DPI, HEIGHT / DPI),
        dpi=DPI,
        sharex=True,
        gridspec_kw={"height_ratios": (5, 1)},
    )
    top.plot(when, report.load, color="black", linewidth=1.0, label="load")
    for colour, run in zip(_COLOURS, report.policies, strict=True):
        top.step(
            when,
            run.ready * per_pod,
            where="post",
            color=colour,
            linewidth=1.0,
            alpha=0.85,
            label=f"{run.name}: ready capacity",
        )
    top.set_ylabel("load / ready capacity")
    top.set_title(
        f"{report.series.source}: replayed load and ready capacity "
        f"(pods ready {report.startup // 60:g} min after being ordered)"
    )
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    for row, (colour, run) in enumerate(zip(_COLOURS, report.policies, strict=True)):
        short = np.flatnonzero(run.short)
        bottom.scatter(
            [when[i] for i in short],
            np.full(short.size, row),
            color=colour,
            marker="|",
            s=120,
        )
    bottom.set_yticks(range(len(report.policies)))
    bottom.set_yticklabels([_short_name(run.name) for run in report.policies], fontsize="small")
    bottom.set_ylim(-0.5, len(report.policies) - 0.5)
    bottom.invert_yaxis()
    bottom.set_title("steps above capacity", fontsize="small")
    bottom.grid(axis="x", alpha=0.3)
    bottom.set_xlabel("time (UTC)")
    return _save(plt, figure, path)


def plot_frontier(path: Path, swept: Sweep) -> tuple[int, int]:
    """Each point of a sweep: cost (pod-hours over the reactive HPA at 0.7) against the share
    of time above capacity, the frontier joined; the PNG's size in pixels."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    styles = {
        "reactive HPA": ("tab:orange", "o"),
        "predictive": ("tab:blue", "s"),
        "configured": ("tab:red", "*"),
    }
    for family, (colour, marker) in styles.items():
        points = [p for p in swept.points if p.family == family]
        axes.scatter(
            [p.cost for p in points],
            [100 * p.scores.time_above_capacity for p in points],
            color=colour,
            marker=marker,
            s=160 if marker == "*" else 40,
            label=family,
            zorder=3,
        )
    # Labels: the configured setup, the reactive HPAs and the settings on the frontier, each
    # unless another label is already close by.
    labelled = [p for p in swept.points if p.family == "configured"]
    labelled += [p for p in swept.points if p.family == "reactive HPA"]
    labelled += sorted(
        (p for p in swept.points if p.family == "predictive" and p.frontier),
        key=lambda p: p.cost,
    )
    xs = [p.cost for p in swept.points]
    ys = [100 * p.scores.time_above_capacity for p in swept.points]
    width = max(max(xs) - min(xs), 1e-9)
    height = max(max(ys) - min(ys), 1e-9)
    placed: list[tuple[float, float]] = []
    for point in labelled:
        x, y = point.cost, 100 * point.scores.time_above_capacity
        if any(abs(x - u) / width < 0.06 and abs(y - v) / height < 0.03 for u, v in placed):
            continue
        placed.append((x, y))
        text = "configured" if point.family == "configured" else point.knobs
        axes.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4), fontsize="x-small")
    front = sorted((p for p in swept.points if p.frontier), key=lambda p: p.cost)
    axes.plot(
        [p.cost for p in front],
        [100 * p.scores.time_above_capacity for p in front],
        color="0.4",
        linewidth=1.0,
        drawstyle="steps-post",
        label="frontier",
    )
    oracle = swept.oracle
    axes.scatter(
        [oracle.cost],
        [100 * oracle.scores.time_above_capacity],
        color="tab:green",
        marker="D",
        s=60,
        label=oracle.knobs,
        zorder=3,
    )
    axes.set_xlabel(f"pod-hours over the reactive HPA at u={BASELINE:g}")
    axes.set_ylabel("time above capacity (%)")
    axes.set_title("cost / shortfall frontier (lower left is better)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    return _save(plt, figure, path)


def _short_name(name: str) -> str:
    return name if len(name) <= 28 else f"{name[:27]}…"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise WhatIfError(
            "plotting needs matplotlib: pip install 'predictive-metrics-adapter[plot]'"
        ) from None
    return plt


def _save(plt: Any, figure: Any, path: Path) -> tuple[int, int]:
    figure.tight_layout()  # margins only: the figure keeps its size
    try:
        figure.savefig(path, dpi=DPI, format="png")
        return WIDTH, HEIGHT
    except OSError as exc:
        raise WhatIfError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    finally:
        plt.close(figure)
