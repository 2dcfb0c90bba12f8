"""Refresh benchmark: the refresh cycle against a real Prometheus, for 1, 100 and 1,000 targets.

Every target is a seed-like workload (request rate, CPU, ready replicas; 14 days + 1 day at a
5-minute step, backfilled with promtool) with a resource policy, so each costs three queries
and one forecast. The adapter's clock is virtual: the first cycle loads the whole history
(cold); each later cycle moves one step (5 min) on, as a 1-minute refresh does every fifth
time, and fetches only the new points. A cycle with nothing new sends no query at all.

    make bench-refresh          # or: python -m bench.refresh --targets 1,100,1000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import adapter
from forecaster import Forecaster, load_forecaster
from tests.prometheus_harness import (
    PrometheusServer,
    SeedWorkload,
    ensure_prometheus,
    seed_workload,
    write_openmetrics_split,
)

DAY = 86400
STEP = 300


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
        workloads = [
            seed_workload(
                start, 15, STEP, namespace="bench", ingress=f"ing-{i}", workload=f"app-{i}", seed=i
            )
            for i in range(max(counts))
        ]
        write_openmetrics_split(directory / "om", (s for w in workloads for s in w.series()))
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


async def run(
    count: int,
    workloads: list[SeedWorkload],
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


def forecasts_config(workloads: list[SeedWorkload], namespace: str) -> str:
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
