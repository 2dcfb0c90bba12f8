"""SIGTERM with requests in flight: each gets an HTTP answer, and the process is gone within
``--shutdown-timeout``.

The server is the real command in its own process, reviewing bearer tokens against the fake
Kubernetes API of `tests.fakes`, whose reviews hang. In-flight requests are those waiting
for their TokenReview when the signal comes.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fakes import FakeKube
from tests.harness import Client
from tests.pki import PKI
from tests.prometheus_harness import free_port

BUDGET = 4.0
"""--shutdown-timeout in these tests, in seconds."""

SLACK = 3.0
"""Seconds past the budget allowed for the process to be reaped on a loaded machine."""

DISCOVERY = "/apis/external.metrics.k8s.io/v1beta1"
IN_FLIGHT = 6


@pytest.fixture
def serving(
    tmp_path: Path, pki: PKI, kubeconfig: Path, values_file: Path, fake_kube: FakeKube
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`serve` in its own process, reviewing tokens with the fake API; yields it, its port
    and its log file."""
    for n in range(IN_FLIGHT):
        fake_kube.tokens[f"token-{n}"] = {"username": f"user-{n}", "groups": ["system:masters"]}
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apiservice",
                "serve",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki.serving.cert}",
                f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.path('client-ca')}",
                "--authentication-skip-lookup",
                f"--kubeconfig={kubeconfig}",
                f"--values-file={values_file}",
                f"--shutdown-timeout={BUDGET:g}s",
                # Reviews that hang outlast the budget: only the shutdown can answer them.
                "--authentication-token-webhook-timeout=60s",
                "--kubernetes-request-timeout=60s",
            ],
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(port, pki.path("serving-ca")) as client:
                    if client.get("/healthz").status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ask(port: int, ca: Path, token: str) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection(
        "localhost", port, context=ssl.create_default_context(cafile=str(ca)), timeout=60
    )
    try:
        connection.request("GET", DISCOVERY, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def sigterm_with_requests_in_flight(
    serving: tuple[subprocess.Popen[bytes], int, Path], pki: PKI, fake_kube: FakeKube
) -> tuple[list[concurrent.futures.Future[tuple[int, bytes]]], float]:
    """Send requests whose reviews hang, then SIGTERM; the futures of their answers and the
    moment of the signal."""
    process, port, _ = serving
    fake_kube.reviews_hang = True
    pool = concurrent.futures.ThreadPoolExecutor(IN_FLIGHT)
    answers = [
        pool.submit(ask, port, pki.path("serving-ca"), f"token-{n}") for n in range(IN_FLIGHT)
    ]
    pool.shutdown(wait=False)
    deadline = time.monotonic() + 20
    while fake_kube.token_reviews == 0:  # the requests are being handled
        assert time.monotonic() < deadline, "no review was asked for"
        time.sleep(0.05)
    time.sleep(1.0)  # all of them, queued for a review or waiting on one
    assert not any(answer.done() for answer in answers)
    process.send_signal(signal.SIGTERM)
    return answers, time.monotonic()


def test_requests_cut_short_by_the_budget_are_answered_503(
    serving: tuple[subprocess.Popen[bytes], int, Path], pki: PKI, fake_kube: FakeKube
) -> None:
    process, _, log = serving
    answers, signalled = sigterm_with_requests_in_flight(serving, pki, fake_kube)
    code = process.wait(BUDGET + 30)
    took = time.monotonic() - signalled
    for answer in answers:
        status, body = answer.result(timeout=10)
        assert status == 503
        message = json.loads(body)
        assert message["kind"] == "Status"
        assert message["reason"] == "ServiceUnavailable"
        assert message["message"] == "the server is shutting down"
    assert took < BUDGET + SLACK, f"exited {took:.1f} s after SIGTERM"
    assert code == 0, log.read_text()
    assert f"answered {IN_FLIGHT} request(s) still running at shutdown" in log.read_text()


def test_requests_that_finish_within_the_budget_get_their_answer(
    serving: tuple[subprocess.Popen[bytes], int, Path], pki: PKI, fake_kube: FakeKube
) -> None:
    process, port, log = serving
    answers, signalled = sigterm_with_requests_in_flight(serving, pki, fake_kube)
    time.sleep(1.0)
    with pytest.raises(ConnectionRefusedError):  # no new connection once stopping
        Client(port, pki.path("serving-ca")).get("/healthz")
    fake_kube.reviews_hang = False  # the API answers again, within the budget
    code = process.wait(BUDGET + 30)
    took = time.monotonic() - signalled
    for answer in answers:
        status, body = answer.result(timeout=10)
        assert status == 200, body
        assert json.loads(body)["kind"] == "APIResourceList"
    assert took < BUDGET + SLACK, f"exited {took:.1f} s after SIGTERM"
    assert code == 0, log.read_text()


def test_the_pod_grace_period_outlasts_the_default_budget() -> None:
    from apiservice.settings import ServingSettings

    deployment = Path(__file__).parents[2] / "deploy" / "base" / "deployment.yaml"
    pod = yaml.safe_load(deployment.read_text())["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= ServingSettings.shutdown_timeout + 5
