"""A PNG of history, forecast and quantile band for one series (needs the `plot` extra).

matplotlib is imported here only, lazily, so that the package works without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_forecast(
    path: Path,
    title: str,
    timestamps: np.ndarray,
    history: np.ndarray,
    future_timestamps: np.ndarray,
    quantiles: np.ndarray,
    actual: np.ndarray | None = None,
) -> None:
    """Write a PNG: the last two days of history, the median and the outer quantile band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(
            "plotting needs matplotlib: pip install 'predictive-metrics-adapter[plot]'"
        ) from exc
    hours = (timestamps - future_timestamps[0]) / 3600
    ahead = (future_timestamps - future_timestamps[0]) / 3600
    shown = hours >= -48
    figure, axes = plt.subplots(figsize=(11, 4), dpi=110)
    axes.plot(hours[shown], history[shown], color="0.35", linewidth=0.8, label="history")
    if actual is not None:
        axes.plot(ahead, actual, color="black", linewidth=1.0, label="actual")
    axes.fill_between(
        ahead, quantiles[0], quantiles[-1], color="tab:blue", alpha=0.25, label="P10-P90"
    )
    axes.plot(
        ahead, quantiles[len(quantiles) // 2], color="tab:blue", linewidth=1.4, label="median"
    )
    axes.axvline(0, color="0.6", linewidth=0.6)
    axes.set_xlabel("hours from the forecast origin")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
