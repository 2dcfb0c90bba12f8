"""The replicas policy: the usage model, its fallback, and the window maximum."""

from __future__ import annotations

import numpy as np
import pytest

from adapter.scaling import (
    PolicyUnavailable,
    UsageModel,
    capacity_replicas,
    fit_usage,
    resource_replicas,
)


def history(
    points: int = 2000, noise: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    traffic = 200 + 150 * np.sin(np.arange(points) / 60) + rng.uniform(0, 20, points)
    replicas = np.ceil(traffic / 60)
    usage = 0.05 * replicas + 0.002 * traffic
    return usage * (1 + noise * rng.standard_normal(points)), replicas, traffic


def test_fit_recovers_base_and_cost() -> None:
    usage, replicas, traffic = history()
    model = fit_usage(usage, replicas, traffic)
    assert model.method == "regression"
    assert model.base == pytest.approx(0.05, rel=0.05)
    assert model.costs[0] == pytest.approx(0.002, rel=0.05)
    assert model.held_out_error < 0.05


def test_outliers_do_not_drag_the_fit() -> None:
    usage, replicas, traffic = history()
    usage[::50] *= 8  # a garbage-collection storm now and then
    model = fit_usage(usage, replicas, traffic)
    assert model.costs[0] == pytest.approx(0.002, rel=0.1)


def test_short_history_falls_back_to_proportional() -> None:
    usage, replicas, traffic = history(points=100)
    model = fit_usage(usage, replicas, traffic)
    assert model.method == "proportional"
    assert model.base == 0
    assert model.costs[0] == pytest.approx(np.median(usage / traffic))


def test_no_traffic_is_no_policy_not_a_guess() -> None:
    usage, replicas, traffic = history(points=100)
    with pytest.raises(PolicyUnavailable):
        fit_usage(usage, replicas, np.zeros_like(traffic))
    with pytest.raises(PolicyUnavailable):
        fit_usage(np.full_like(usage, np.nan), replicas, traffic)


def test_resource_replicas_take_the_window_maximum_and_clamp() -> None:
    model = UsageModel(base=0.05, costs=(0.002,), method="regression", held_out_error=0.01)
    window = np.array([[100.0, 400.0, 250.0]])
    # 0.002 * 400 / (0.3 - 0.05) = 3.2 -> 4
    assert resource_replicas(model, window, 0.3, 1, 10) == (4, "")
    assert resource_replicas(model, window, 0.3, 5, 10) == (5, "")
    assert resource_replicas(model, window * 10, 0.3, 1, 10) == (10, "")
    count, note = resource_replicas(model, window, 0.04, 1, 10)
    assert count == 10
    assert "idle pod" in note


def test_capacity_replicas_never_zero_and_exact_multiples_do_not_round_up() -> None:
    assert capacity_replicas(np.array([0.0, 0.0]), 50, 1, 10) == 1
    assert capacity_replicas(np.array([100.0, 200.00000000001]), 50, 1, 10) == 4
    assert capacity_replicas(np.array([120.0, -5.0]), 50, 1, 10) == 3
