"""KEDA external scaler benchmark: GetMetrics calls/s and latency over TLS on loopback.

The adapter runs in its own process (the bundled demo trace replayed as history, one forecast
target, the gRPC scaler with the serving certificate); this process drives it with a
generated client, as KEDA's operator would, from several threads.

    make bench-keda            # or: python -m bench.keda --calls 20000 --threads 8
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from kedascaler.externalscaler import externalscaler_pb2 as pb, externalscaler_pb2_grpc as rpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.keda", "--serve", str(directory)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            drive(directory, port, args.calls, args.threads)
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(15)


async def serve(directory: Path) -> None:
    from apiservice import commands
    from apiservice.server import Server
    from apiservice.settings import KedaSettings

    setup = commands.prepare_local(directory, 0, None)
    keda = KedaSettings(grpc_port=0, grpc_bind_address="127.0.0.1")
    settings = dataclasses.replace(setup.settings, keda=keda)
    server = await asyncio.to_thread(Server, settings, source=setup.source)
    await server.start()
    while server.refresher is not None and server.refresher.last_report is None:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # the refresher offers no event to wait on
    print(server.grpc_port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


def drive(directory: Path, port: int, calls: int, threads: int) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(directory / "ca.crt").read_bytes()
    )
    request = pb.GetMetricsRequest(
        scaledObjectRef=pb.ScaledObjectRef(
            name="demo", namespace="default", scalerMetadata={"target": "demo"}
        ),
        metricName="predicted_replicas",
    )
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        stub = rpc.ExternalScalerStub(channel)
        value = stub.GetMetrics(request).metricValues[0].metricValueFloat
        for _ in range(500):  # warm-up
            stub.GetMetrics(request)

        def worker(count: int) -> list[float]:
            latencies = []
            for _ in range(count):
                began = time.perf_counter()
                stub.GetMetrics(request)
                latencies.append(time.perf_counter() - began)
            return latencies

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(worker, [calls // threads] * threads))
        elapsed = time.perf_counter() - started
    latencies = np.concatenate(parts) * 1000
    print(
        f"GetMetrics over TLS, {threads} client threads, {len(latencies)} calls "
        f"(value {value:g}; client and server share this machine's cores):"
    )
    print(
        f"  {len(latencies) / elapsed:.0f} calls/s, p50 {np.percentile(latencies, 50):.2f} ms, "
        f"p99 {np.percentile(latencies, 99):.2f} ms, max {latencies.max():.2f} ms"
    )


if __name__ == "__main__":
    main()
