"""From forecast load to desired replicas: the policy, and the usage model it rests on.

**Capacity policy** (``capacity.perPod``): one pod handles `per_pod` units of load, so

    replicas(t) = ceil(load(t) / per_pod)

The served count of a capacity target is sized by `adapter.objective` (see
`adapter.planning`): the load is the calibrated bound of its maximum over the lead window at
the setting's quantile, divided by per_pod times the setting's utilisation, and at least the
last value seen at the reactive utilisation when the setting has a reactive part.
`capacity_replicas` is the same division over a window of the forecast itself.

**Resource policy** (``resource``): the workload's total resource usage U (e.g. CPU cores) is
modelled from history as a per-replica base plus a cost per unit of each traffic signal T_k:

    U(t) = base * n(t) + sum_k cost_k * T_k(t)          (base, cost_k >= 0)

fitted robustly (non-negative least squares, re-weighted to damp outliers) on all history
but the last fifth, and checked on that last fifth: the fit is used when its median relative
error there is at most 25 % and it explains at least half of the (median-based) variance.
Per-pod usage with n pods is base + sum_k cost_k * T_k / n, so keeping it at or below the
target usage per pod τ needs

    replicas(t) = ceil( sum_k cost_k * T_k(t) / (τ - base) )      (τ > base)

When the fit fails its check, or there is less than a day of history, the **fallback** drops
the base: usage is taken as proportional to the first signal, cost = the median of U / T over
the history (replicas(t) = ceil(cost * T(t) / τ)). When even that is impossible (no usage
history, or no traffic at all), there is no policy and the target serves an error, not a
guess. If τ <= base (an idle pod already uses more than the target), the target is scaled to
its maximum and the policy says why.

In all cases the desired count is sized for the **maximum over the forecast window**, clamped
to [min, max], never 0 and never NaN. For a capacity policy that window is literally
[now, now + lead time]: the step in progress up to the one pods ordered now are ready for,
``ForecastTarget.window_steps`` forecast steps. A resource policy keeps its window of
``ForecastTarget.lead_steps`` steps (the lead time from the step in progress on, its last
step not included), at the configured quantile of the load forecast; it is not calibrated
and not tuned.

Pure numpy: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from adapter.errors import PolicyUnavailable

__all__ = [
    "PolicyUnavailable",
    "UsageModel",
    "capacity_replicas",
    "fit_usage",
    "resource_replicas",
]

MIN_FIT_POINTS = 288
"""A day at 5-minute steps: below that the fallback is used."""
MIN_FALLBACK_POINTS = 12
MAX_RELATIVE_ERROR = 0.25
MIN_EXPLAINED = 0.5


@dataclasses.dataclass(frozen=True)
class UsageModel:
    base: float
    costs: tuple[float, ...]
    method: str  # "regression" or "proportional"
    held_out_error: float  # relative MAE on the held-out fifth (nan for the fallback)

    def summary(self) -> str:
        costs = ", ".join(f"{cost:.4g}" for cost in self.costs)
        error = (
            "the fallback where no regression fits the history: no held-out error"
            if math.isnan(self.held_out_error)
            else f"held-out error {100 * self.held_out_error:.1f}%"
        )
        return f"{self.method}: base {self.base:.4g} per replica, costs {costs} ({error})"


def fit_usage(usage: np.ndarray, replicas: np.ndarray, traffic: np.ndarray) -> UsageModel:
    """Fit U = base * n + cost . T on aligned history (traffic is (K, N))."""
    traffic = np.atleast_2d(traffic)
    rows = (
        np.isfinite(usage)
        & np.isfinite(replicas)
        & (replicas > 0)
        & np.all(np.isfinite(traffic), 0)
    )
    u, n, t = usage[rows], replicas[rows], traffic[:, rows]
    if len(u) >= MIN_FIT_POINTS:
        split = int(len(u) * 0.8)
        design = np.vstack([n, t]).T
        coefficients = _robust_nonnegative_fit(design[:split], u[:split])
        predicted = design[split:] @ coefficients
        actual = u[split:]
        # Judged by medians, so that a few spikes in the held-out part do not fail a good fit.
        scale = float(np.median(np.abs(actual)))
        residual = predicted - actual
        error = float(np.median(np.abs(residual))) / scale if scale > 0 else math.inf
        spread = float(np.median((actual - np.median(actual)) ** 2))
        explained = 1 - float(np.median(residual**2)) / spread if spread > 0 else 0.0
        if (
            error <= MAX_RELATIVE_ERROR
            and explained >= MIN_EXPLAINED
            and np.any(coefficients[1:] > 0)
        ):
            return UsageModel(
                float(coefficients[0]),
                tuple(float(c) for c in coefficients[1:]),
                "regression",
                error,
            )
    loaded = t[0] > 0
    if np.sum(loaded) < MIN_FALLBACK_POINTS:
        raise PolicyUnavailable(
            f"{int(np.sum(loaded))} points with both usage and traffic in the history; "
            f"at least {MIN_FALLBACK_POINTS} are needed"
        )
    cost = float(np.median(u[loaded] / t[0][loaded]))
    if not cost > 0:
        raise PolicyUnavailable("usage does not grow with traffic in the history")
    costs = (cost,) + (0.0,) * (len(t) - 1)
    return UsageModel(0.0, costs, "proportional", math.nan)


def resource_replicas(
    model: UsageModel, traffic: np.ndarray, target_per_pod: float, low: int, high: int
) -> tuple[int, str]:
    """Desired replicas for the (K, L) forecast window, and a note when clamped oddly."""
    traffic = np.atleast_2d(traffic)
    if target_per_pod <= model.base:
        return high, (
            f"an idle pod uses {model.base:.4g}, more than the target {target_per_pod:.4g} "
            f"per pod: scaled to the maximum"
        )
    load = np.asarray(model.costs) @ np.maximum(traffic, 0.0)
    need = _ceil(float(np.max(load)) / (target_per_pod - model.base))
    return _clamp(need, low, high), ""


def capacity_replicas(traffic: np.ndarray, per_pod: float, low: int, high: int) -> int:
    """Desired replicas when one pod handles `per_pod` units of the (L,) forecast window."""
    need = _ceil(float(np.max(np.maximum(traffic, 0.0))) / per_pod)
    return _clamp(need, low, high)


def _ceil(value: float) -> int:
    if not math.isfinite(value):
        raise PolicyUnavailable(f"the replica calculation gave {value}")
    # A hair of tolerance: 4.000000001 replicas are 4, not 5.
    return max(0, math.ceil(value - 1e-9))


def _clamp(need: int, low: int, high: int) -> int:
    return max(low, min(high, need))


def _robust_nonnegative_fit(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares with coefficients >= 0 (active set), re-weighted twice (Huber-like)."""
    weights = np.ones(len(target))
    coefficients = np.zeros(design.shape[1])
    for _ in range(3):
        coefficients = _nonnegative_least_squares(design * weights[:, None], target * weights)
        residual = np.abs(design @ coefficients - target)
        cutoff = 1.345 * max(float(np.median(residual)) / 0.6745, 1e-12)
        weights = np.sqrt(np.where(residual <= cutoff, 1.0, cutoff / np.maximum(residual, 1e-300)))
    return coefficients


def _nonnegative_least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    active = list(range(design.shape[1]))
    while True:
        solution = np.zeros(design.shape[1])
        if not active:
            return solution
        fitted, *_ = np.linalg.lstsq(design[:, active], target, rcond=None)
        solution[active] = fitted
        negative = [column for column, value in zip(active, fitted, strict=True) if value < 0]
        if not negative:
            return solution
        # Drop the most negative coefficient and refit (K is tiny: a few signals).
        worst = min(negative, key=lambda column: solution[column])
        active.remove(worst)
