"""The refresh benchmark's set-up: the workloads are generated apart from what it measures."""

from __future__ import annotations

from pathlib import Path

from bench import refresh
from tests.prometheus_harness import seed_workload

START = 1_790_000_000 // 86400 * 86400


def test_generating_leaves_only_names_and_queries(tmp_path: Path) -> None:
    """What the benchmark keeps of a workload configures the same targets as the workload."""
    kept = refresh.generate(tmp_path, START, 2)
    assert all(isinstance(w, refresh.Workload) for w in kept)
    seeds = [
        seed_workload(
            START,
            15,
            refresh.STEP,
            namespace="bench",
            ingress=f"ing-{i}",
            workload=f"app-{i}",
            seed=i,
        )
        for i in range(2)
    ]
    assert refresh.forecasts_config(kept, "bench") == refresh.forecasts_config(seeds, "bench")
    written = "".join(path.read_text() for path in sorted(tmp_path.glob("*.om")))
    for workload in kept:
        assert f'statefulset="{workload.workload}"' in written  # its series are in the files
