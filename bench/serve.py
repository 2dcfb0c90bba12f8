"""Serving benchmark: the metric GET over TLS keep-alive, authenticated as the HPA through the
front proxy, from a load generator on loopback (ApacheBench, a separate C process).

It starts the adapter as its own process (as deployed: `predictive-metrics-adapter serve`),
with a small stand-in for the Kubernetes API that allows every SubjectAccessReview, so the
request path includes front-proxy certificate checks and the authorization cache. It prints
requests/s and latency percentiles for 1 and 1,000 stored values.

    make bench-serve            # or: python -m bench.serve --requests 50000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from certs import files, issuing
from tests.e2e.cluster import adapter_command
from tests.harness import write_kubeconfig
from tests.prometheus_harness import free_port

DAY = datetime.timedelta(days=1)
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("ab") is None:
        sys.exit("ab (apache2-utils) is needed: apt-get install apache2-utils")
    with tempfile.TemporaryDirectory() as scratch, stand_in_kube_api(Path(scratch)) as kubeconfig:
        directory = Path(scratch)
        pki = make_pki(directory)
        print(
            f"ab: {args.requests} requests, concurrency {args.concurrency}, keep-alive, TLS, "
            f"front-proxy identity {HPA}; {os.cpu_count()} CPUs shared by server and ab"
        )
        print(
            f"{'stored values':>14} {'req/s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'failed':>7} {'server RSS MiB':>15}"
        )
        for stored in (1, 1000):
            values = directory / f"values-{stored}.yaml"
            write_values(values, stored)
            with adapter_process(pki, kubeconfig, "--values-file", str(values)) as (port, pid):
                url = f"https://127.0.0.1:{port}{PATH}?labelSelector=target%3Dt{stored // 2}"
                check_answer(pki, url)
                run_ab(pki, url, 2000, args.concurrency)  # warm-up: caches, allocator
                result = run_ab(pki, url, args.requests, args.concurrency)
                rss = rss_mib(pid)
            print(
                f"{stored:>14} {result['rps']:>9.0f} {result['50']:>7} {result['90']:>7} "
                f"{result['99']:>7} {result['100']:>7} {result['failed']:>7} {rss:>15.0f}"
            )


def make_pki(directory: Path) -> dict[str, Path]:
    serving_ca = issuing.new_ca("bench-serving-ca", valid_for=DAY)
    front_ca = issuing.new_ca("bench-front-proxy-ca", valid_for=DAY)
    serving = issuing.issue_serving(serving_ca, ["localhost", "127.0.0.1"], valid_for=DAY)
    proxy = issuing.issue_client(front_ca, "front-proxy-client", valid_for=DAY)
    paths = {
        "tls_dir": directory,  # tls.crt and tls.key, as adapter_command expects
        "serving_ca": directory / "serving-ca.crt",
        "front_ca": directory / "front-proxy-ca.crt",
        "proxy_pem": directory / "front-proxy-client.pem",
    }
    files.write_issued(serving, directory / "tls.crt", directory / "tls.key")
    files.write_pem(paths["serving_ca"], serving_ca.cert_pem(), private=False)
    files.write_pem(paths["front_ca"], front_ca.cert_pem(), private=False)
    files.write_pem(paths["proxy_pem"], proxy.cert_pem() + proxy.key_pem(), private=True)
    return paths


def write_values(path: Path, count: int) -> None:
    item = "  - {{metric: predicted_replicas, namespace: shop, labels: {{target: t{}}}, value: {}}}"
    lines = ["values:"] + [item.format(i, i + 1) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def stand_in_kube_api(directory: Path, token_review_delay: float = 0.0) -> Iterator[Path]:
    """A loopback HTTPS endpoint (in a thread) that allows every SubjectAccessReview and, after
    `token_review_delay` seconds, authenticates no bearer token."""

    async def review(request: web.Request) -> web.Response:
        body = await request.json()
        body["status"] = {"allowed": True}
        return web.json_response(body, status=201)

    async def token_review(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(token_review_delay)
        body["status"] = {"authenticated": False, "error": "unknown token"}
        return web.json_response(body, status=201)

    ca = issuing.new_ca("bench-kube-ca", valid_for=DAY)
    leaf = issuing.issue_serving(ca, ["127.0.0.1"], valid_for=DAY)
    files.write_issued(leaf, directory / "kube.crt", directory / "kube.key")
    files.write_pem(directory / "kube-ca.crt", ca.cert_pem(), private=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "kube.crt", directory / "kube.key")
    app = web.Application()
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", token_review)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    kubeconfig = write_kubeconfig(
        directory / "kubeconfig",
        f"https://127.0.0.1:{port}",
        directory / "kube-ca.crt",
        {"token": "bench"},
    )
    try:
        yield kubeconfig
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def adapter_process(
    pki: dict[str, Path], kubeconfig: Path, *provider: str
) -> Iterator[tuple[int, int]]:
    """`serve` as its own process, trusting the front proxy; `provider` are the flags that say
    what it serves (``--values-file f`` or ``--config f --prometheus-url u``)."""
    port = free_port()
    command = adapter_command(
        port,
        pki["tls_dir"],
        kubeconfig,
        "--requestheader-client-ca-file",
        str(pki["front_ca"]),
        "--requestheader-allowed-names",
        "front-proxy-client",
        "--authentication-skip-lookup",
        *provider,
        "--log-level",
        "warning",
    )
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 30
        context = ssl.create_default_context(cafile=str(pki["serving_ca"]))
        while True:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/readyz", context=context, timeout=1
                ):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the adapter did not start") from None
                time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(15)


def check_answer(pki: dict[str, Path], url: str) -> None:
    context = ssl.create_default_context(cafile=str(pki["serving_ca"]))
    context.load_cert_chain(pki["proxy_pem"])
    request = urllib.request.Request(
        url, headers={"X-Remote-User": HPA, "X-Remote-Group": "system:serviceaccounts"}
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        items = json.load(response)["items"]
    if len(items) != 1:
        raise SystemExit(f"expected one item from {url}, got {len(items)}")


def run_ab(pki: dict[str, Path], url: str, requests: int, concurrency: int) -> dict[str, float]:
    done = subprocess.run(
        [
            "ab",
            "-q",
            "-k",
            "-n",
            str(requests),
            "-c",
            str(concurrency),
            "-E",
            str(pki["proxy_pem"]),
            "-H",
            f"X-Remote-User: {HPA}",
            "-H",
            "X-Remote-Group: system:serviceaccounts",
            "-H",
            "Accept: application/vnd.kubernetes.protobuf, */*",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    if rps is None:
        raise SystemExit(f"unexpected ab output:\n{out}")
    result: dict[str, float] = {"rps": float(rps.group(1))}
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    result["failed"] = int(failed.group(1) if failed else 0) + int(non2xx.group(1) if non2xx else 0)
    for percent in ("50", "90", "99", "100"):
        match = re.search(rf"^\s+{percent}%\s+(\d+)", out, re.MULTILINE)
        result[percent] = float(match.group(1)) if match else float("nan")
    return result


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


if __name__ == "__main__":
    main()
