"""Refresh benchmark: the refresh cycle against a real Prometheus, for 1, 100 and 1,000 targets.

Every target is a seed-like workload (request rate, CPU, ready replicas; 14 days + 1 day at a
5-minute step, backfilled with promtool) with a resource policy, so each costs three queries
and one forecast. The adapter's clock is virtual: the first cycle loads the whole history
(cold); each later cycle moves one step (5 min) on, as a 1-minute refresh does every fifth
time, and fetches only the new points. A cycle with nothing new sends no query at all.

RSS is the adapter's own: the workloads are generated, and their OpenMetrics written, in a
child process, so that the benchmark holds none of it (only each target's name and queries);
what Python, numpy and the model take before any target is printed first.

    make bench-refresh          # or: python -m bench.refresh --targets 1,100,1000
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import adapter
from forecaster import Forecaster, load_forecaster
from tests.prometheus_harness import (
    PrometheusServer,
    ensure_prometheus,
    seed_workload,
    write_openmetrics_split,
)

DAY = 86400
STEP = 300


class Workload(NamedTuple):
    """What the adapter is configured with for one generated workload."""

    workload: str
    queries: dict[str, str]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1,100,1000")
    parser.add_argument("--warm-cycles", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8, help="--query-concurrency")
    args = parser.parse_args()
    counts = [int(n) for n in args.targets.split(",")]
    ensure_prometheus()
    end = int(time.time()) // DAY * DAY - DAY
    start = end - 15 * DAY
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        began = time.perf_counter()
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as child:
            workloads = child.submit(generate, directory / "om", start, max(counts)).result()
        print(
            f"generated {len(workloads)} workloads x 3 series x 15 d at 5 min "
            f"in {time.perf_counter() - began:.0f}s"
        )
        with PrometheusServer(directory / "data", directory / "om") as prometheus:
            print(
                f"backfill {prometheus.backfill_seconds:.0f}s, "
                f"Prometheus ready in {prometheus.ready_seconds:.2f}s"
            )
            time.sleep(70)  # Prometheus compacts the backfilled blocks about a minute after start
            model = load_forecaster()
            print(f"RSS before any target (Python, numpy, the model): {rss():.0f} MiB")
            print(
                f"{'targets':>8} {'cycle':>6} {'seconds':>8} {'queries':>8} "
                f"{'failed':>7} {'RSS MiB':>8}"
            )
            for count in counts:
                print(f"{count} targets, {args.concurrency} queries in flight")
                asyncio.run(
                    run(
                        count,
                        workloads[:count],
                        prometheus.url,
                        model,
                        end - DAY,
                        args.warm_cycles,
                        args.concurrency,
                    )
                )


def generate(directory: Path, start: int, count: int) -> list[Workload]:
    """Write `count` workloads' 15 days as OpenMetrics into `directory` (run in a child
    process: the series never enter the benchmark's memory); their names and queries."""
    workloads = [
        seed_workload(
            start, 15, STEP, namespace="bench", ingress=f"ing-{i}", workload=f"app-{i}", seed=i
        )
        for i in range(count)
    ]
    write_openmetrics_split(directory, (s for w in workloads for s in w.series()))
    return [Workload(w.workload, w.queries) for w in workloads]


async def run(
    count: int,
    workloads: list[Workload],
    url: str,
    model: Forecaster,
    now: int,
    warm: int,
    concurrency: int,
) -> None:
    config = adapter.load_config(forecasts_config(workloads, "bench"), "bench")
    clock = [float(now)]
    store = adapter.PredictionStore(lambda: clock[0])
    source = adapter.PrometheusSource(adapter.PrometheusSettings(url=url, timeout=30))
    refresher = adapter.Refresher(
        source, model, store, ttl=600, clock=lambda: clock[0], concurrency=concurrency
    )
    refresher.configure(config)
    try:
        for cycle in range(warm + 2):
            if cycle > 0:
                clock[0] += STEP if cycle <= warm else 60
            report = await refresher.refresh()
            label = "cold" if cycle == 0 else f"+{STEP // 60}m" if cycle <= warm else "+1m"
            print(
                f"{count:>8} {label:>6} {report.seconds:>8.2f} {report.queries:>8} "
                f"{report.failed:>7} {rss():>8.0f}"
            )
    finally:
        refresher.close()
        source.close()


class Queried(Protocol):
    """A workload as a target is configured from (`Workload`, or the harness' `SeedWorkload`)."""

    @property
    def workload(self) -> str: ...

    @property
    def queries(self) -> dict[str, str]: ...


def forecasts_config(workloads: Sequence[Queried], namespace: str) -> str:
    """A ``forecasts`` config with one resource-policy target per workload (three queries)."""
    targets = []
    for w in workloads:
        q = w.queries
        targets.append(
            f"""
- name: {w.workload}
  namespace: {namespace}
  traffic: {{name: requests, query: '{q["rate"]}'}}
  resource: {{query: '{q["cpu"]}', targetAverageValue: 0.1}}
  replicas: {{query: '{q["replicas"]}'}}
  step: 5m
  maxReplicas: 50"""
        )
    return "forecasts:" + "".join(targets) + "\n"


def rss() -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


if __name__ == "__main__":
    main()
