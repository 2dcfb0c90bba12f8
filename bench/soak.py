"""Soak benchmark: the adapter under a mixed load for minutes, watched for drift.

It starts a real Prometheus with 15 days of seed-like history for a few workloads ending now,
a stand-in Kubernetes API (SubjectAccessReviews allowed; TokenReviews answered "not
authenticated" after a delay), and `predictive-metrics-adapter serve` as its own process with
a short refresh interval. Then, for `--minutes`, a load generator on loopback mixes:

- HPA reads of ``predicted_replicas`` over TLS keep-alive as the HPA's front-proxy identity
  (expected 200);
- discovery reads (expected 200);
- bearer tokens nobody issued, each on a new connection (expected 401, or 429/503 while the
  review queue is full);
- malformed label selectors (expected 400);
- connections that complete TLS and then idle (closed by the server or the generator);
- a rewrite of the config file every 30 s (a reload that must not disturb the reads).

Each minute it prints the requests and unexpected answers by kind, the HPA reads' p50/p99 and
the server's RSS. At the end it compares the last minute with the first minute after warm-up:
p99 and RSS growth (the issue's bound: under 5 %).

    python -m bench.soak                 # 12 minutes: 2 of warm-up, 10 judged
    python -m bench.soak --minutes 3 --warm-up 1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import random
import secrets
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.refresh import forecasts_config
from bench.serve import HPA, adapter_process, make_pki, rss_mib, stand_in_kube_api
from tests.prometheus_harness import (
    PrometheusServer,
    SeedWorkload,
    ensure_prometheus,
    seed_workload,
    write_openmetrics_split,
)

DAY = 86400
STEP = 300
NAMESPACE = "soak"
DISCOVERY = "/apis/external.metrics.k8s.io/v1beta1"
EXPECTED = {
    "hpa": {200},
    "discovery": {200},
    "token": {401, 429, 503},
    "selector": {400},
}


@dataclasses.dataclass
class Minute:
    """What one minute of load saw."""

    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    unexpected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    hpa_seconds: list[float] = dataclasses.field(default_factory=list)
    idle_connections: int = 0

    def record(self, kind: str, status: int | str, seconds: float) -> None:
        self.requests[kind] += 1
        if status not in EXPECTED[kind]:
            self.unexpected[f"{kind}:{status}"] += 1
        if kind == "hpa":
            self.hpa_seconds.append(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--warm-up", type=float, default=2.0, help="minutes not judged")
    parser.add_argument("--workloads", type=int, default=20)
    parser.add_argument("--hpa-readers", type=int, default=4)
    parser.add_argument("--review-delay", type=float, default=0.2, help="TokenReview seconds")
    args = parser.parse_args()
    ensure_prometheus()
    end = int(time.time()) // STEP * STEP
    start = end - 15 * DAY
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        workloads = [
            seed_workload(
                start, 15, STEP, namespace=NAMESPACE, ingress=f"i-{i}", workload=f"app-{i}", seed=i
            )
            for i in range(args.workloads)
        ]
        write_openmetrics_split(directory / "om", (s for w in workloads for s in w.series()))
        config = directory / "config.yaml"
        write_config(config, workloads, revision=0)
        pki = make_pki(directory)
        with (
            PrometheusServer(directory / "data", directory / "om") as prometheus,
            stand_in_kube_api(directory, args.review_delay) as kubeconfig,
            adapter_process(
                pki,
                kubeconfig,
                "--config",
                str(config),
                "--prometheus-url",
                prometheus.url,
                "--refresh-interval",
                "20s",
            ) as (port, pid),
        ):
            print(
                f"soak: {args.minutes:g} min ({args.warm_up:g} warm-up), {len(workloads)} targets "
                f"refreshed every 20 s from a real Prometheus, TokenReview delay "
                f"{args.review_delay:g} s, server pid {pid}"
            )
            minutes = asyncio.run(soak(args, port, pki, config, workloads, pid))
    report(minutes, args.warm_up)


def write_config(path: Path, workloads: list[SeedWorkload], revision: int) -> None:
    text = f"# revision {revision}\n" + forecasts_config(workloads, NAMESPACE)
    partial = path.with_suffix(".part")
    partial.write_text(text)
    partial.replace(path)


async def soak(
    args: argparse.Namespace,
    port: int,
    pki: dict[str, Path],
    config: Path,
    workloads: list[SeedWorkload],
    pid: int,
) -> list[tuple[Minute, float]]:
    base = f"https://127.0.0.1:{port}"
    proxy = ssl.create_default_context(cafile=str(pki["serving_ca"]))
    proxy.load_cert_chain(pki["proxy_pem"])
    anonymous = ssl.create_default_context(cafile=str(pki["serving_ca"]))
    headers = {"X-Remote-User": HPA, "X-Remote-Group": "system:serviceaccounts"}
    names = [w.workload for w in workloads]
    metric = f"{DISCOVERY}/namespaces/{NAMESPACE}/predicted_replicas"

    connector = aiohttp.TCPConnector(ssl=proxy, limit=args.hpa_readers + 2)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as hpa:
        await wait_until_served(hpa, base + metric, names[0])
        minutes: list[tuple[Minute, float]] = []
        current = Minute()
        stop = time.monotonic() + args.minutes * 60

        async def timed(kind: str, session: aiohttp.ClientSession, url: str, **kw: object) -> None:
            began = time.perf_counter()
            try:
                async with session.get(url, **kw) as response:  # type: ignore[arg-type]
                    await response.read()
                    status: int | str = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                status = type(error).__name__
            current.record(kind, status, time.perf_counter() - began)

        async def hpa_reader() -> None:
            while time.monotonic() < stop:
                target = random.choice(names)
                await timed("hpa", hpa, f"{base}{metric}?labelSelector=target%3D{target}")
                await asyncio.sleep(0.01)

        async def discovery() -> None:
            while time.monotonic() < stop:
                await timed("discovery", hpa, base + DISCOVERY)
                await asyncio.sleep(0.2)

        async def token_flood() -> None:
            timeout = aiohttp.ClientTimeout(total=15)
            while time.monotonic() < stop:
                fresh = aiohttp.TCPConnector(ssl=anonymous, force_close=True)
                async with aiohttp.ClientSession(connector=fresh, timeout=timeout) as anon:
                    bearer = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
                    await timed("token", anon, base + metric, headers=bearer)
                await asyncio.sleep(0.02)

        async def bad_selector() -> None:
            while time.monotonic() < stop:
                await timed("selector", hpa, f"{base}{metric}?labelSelector=target%3D%3D%3D")
                await asyncio.sleep(0.1)

        async def idler() -> None:
            while time.monotonic() < stop:
                _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous)
                current.idle_connections += 1
                await asyncio.sleep(5)
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()

        async def reloader() -> None:
            revision = 0
            while time.monotonic() < stop:
                await asyncio.sleep(30)
                revision += 1
                await asyncio.to_thread(write_config, config, workloads, revision)

        async def clock() -> None:
            nonlocal current
            index = 0
            while time.monotonic() < stop:
                await asyncio.sleep(min(60.0, max(0.0, stop - time.monotonic())))
                done, current = current, Minute()
                rss = rss_mib(pid)
                minutes.append((done, rss))
                index += 1
                print_minute(index, done, rss)

        workers = [hpa_reader() for _ in range(args.hpa_readers)]
        workers += [token_flood() for _ in range(4)]
        workers += [discovery(), bad_selector(), reloader(), clock()]
        workers += [idler() for _ in range(4)]
        await asyncio.gather(*workers)
    return minutes


async def wait_until_served(session: aiohttp.ClientSession, url: str, target: str) -> None:
    """The first refresh loads 15 days of history for every target: wait for a value."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        async with session.get(f"{url}?labelSelector=target%3D{target}") as response:
            if response.status == 200:
                return
        await asyncio.sleep(1)
    raise SystemExit("no prediction was served within 5 minutes")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_minute(index: int, minute: Minute, rss: float) -> None:
    kinds = " ".join(f"{k}={minute.requests[k]}" for k in EXPECTED)
    unexpected = dict(minute.unexpected) or "none"
    print(
        f"min {index:>3}: {kinds} idle={minute.idle_connections} | hpa p50 "
        f"{percentile(minute.hpa_seconds, 0.5) * 1000:.1f} ms p99 "
        f"{percentile(minute.hpa_seconds, 0.99) * 1000:.1f} ms | RSS {rss:.0f} MiB | "
        f"unexpected {unexpected}",
        flush=True,
    )


def report(minutes: list[tuple[Minute, float]], warm_up: float) -> None:
    judged = minutes[max(1, round(warm_up)) :]
    if len(judged) < 2:
        print("too short to judge: run more minutes than the warm-up plus two")
        return
    (first, rss_first), (last, rss_last) = judged[0], judged[-1]
    unexpected = sum((m.unexpected for m, _ in minutes), collections.Counter[str]())
    total = sum(sum(m.requests.values()) for m, _ in minutes)
    p99_first = percentile(first.hpa_seconds, 0.99) * 1000
    p99_last = percentile(last.hpa_seconds, 0.99) * 1000
    p99_all = [percentile(m.hpa_seconds, 0.99) * 1000 for m, _ in judged]
    growth = (rss_last - rss_first) / rss_first * 100
    print(f"requests: {total}; unexpected answers: {dict(unexpected) or 'none'}")
    print(
        f"HPA read p99 after warm-up: first minute {p99_first:.1f} ms, last {p99_last:.1f} ms, "
        f"median of minutes {statistics.median(p99_all):.1f} ms, worst {max(p99_all):.1f} ms"
    )
    print(f"server RSS after warm-up: {rss_first:.0f} -> {rss_last:.0f} MiB ({growth:+.1f} %)")


if __name__ == "__main__":
    main()
