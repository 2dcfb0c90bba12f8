"""A flood of made-up bearer tokens must not starve the HPA (issue 10, finding 6).

The fake Kubernetes API answers reviews slowly (0.5 s) or not at all. A separate process
(`review_flood`) keeps 100 connections busy with random tokens. Meanwhile an HPA-like client
reads a metric the two ways the HPA can arrive: through the front proxy (kube-apiserver's
client certificate with X-Remote-* headers, as in a real cluster) and with a bearer token.
Its reads stay fast and are never a 500; the flood gets quick 401, 429 or 503 Status answers
within the review deadline; and a failing review is not asked again for every request.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apiservice import kube, settings as flags
from apiservice.errors import ConfigError
from apiservice.server import Server
from apiservice.settings import REVIEW_TIMEOUT, AuthorizationSettings
from tests.fakes import FakeKube
from tests.harness import Answer, Client, settings_for
from tests.pki import PKI

BASE = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop"
METRIC = f"{BASE}/predicted_replicas"
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
HPA_HEADERS = {"X-Remote-User": HPA, "X-Remote-Group": "system:serviceaccounts"}
HPA_TOKEN = "hpa-service-account-token"
CONNECTIONS = 100
SLACK = 2.0
"""Seconds of scheduling noise allowed on a loaded two-core machine."""


@dataclasses.dataclass
class Reads:
    codes: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    latencies: list[float] = dataclasses.field(default_factory=list)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[math.ceil(0.99 * len(ordered)) - 1]


class HPAClient:
    """The HPA reading a metric, through the front proxy and with its token, alternately."""

    def __init__(self, server: Server, pki: PKI) -> None:
        self.server = server
        ca = pki.path("serving-ca")
        self.proxied = Client(server.port, ca, pki.front_proxy)
        self.tokened = Client(server.port, ca)
        self.reads = Reads()

    def read(self) -> None:
        for client, headers in (
            (self.proxied, HPA_HEADERS),
            (self.tokened, {"Authorization": f"Bearer {HPA_TOKEN}"}),
        ):
            started = time.perf_counter()
            try:
                code = client.get(METRIC, headers).status
            except TimeoutError:  # no answer within the client's 10 s: recorded as code 0
                code = 0
            self.reads.latencies.append(time.perf_counter() - started)
            self.reads.codes[code] += 1

    def read_for(self, seconds: float) -> Reads:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.read()
            time.sleep(0.02)
        return self.reads

    def close(self) -> None:
        self.proxied.close()
        self.tokened.close()


@pytest.fixture
def hpa_allowed(fake_kube: FakeKube) -> FakeKube:
    """The fake API knows the HPA's token and lets the HPA list predicted_replicas."""
    fake_kube.tokens[HPA_TOKEN] = {
        "username": HPA,
        "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
    }
    fake_kube.allow.add((HPA, "list", "predicted_replicas"))
    return fake_kube


@pytest.fixture
def start_hpa(
    make_server: Callable[..., Server], pki: PKI, kubeconfig: Path, values_file: Path
) -> Iterator[Callable[..., HPAClient]]:
    """A server, and the HPA reading from it once (authenticated, authorized and cached)."""
    clients: list[HPAClient] = []

    def start(ttl: float | None = None) -> HPAClient:
        """`ttl`: seconds tokens and decisions are cached, if not the defaults."""
        if ttl is None:
            settings = settings_for(pki, kubeconfig, values_file)
        else:
            settings = dataclasses.replace(
                settings_for(pki, kubeconfig, values_file, token_cache_ttl=ttl),
                authorization=AuthorizationSettings(authorized_ttl=ttl),
            )
        client = HPAClient(make_server(settings), pki)
        clients.append(client)
        client.read()
        assert client.reads.codes == {200: 2}
        client.reads = Reads()
        return client

    yield start
    for client in clients:
        client.close()


class Flood:
    """The flooding process, started on entry; `summary()` waits for its end."""

    def __init__(self, server: Server, pki: PKI, seconds: float) -> None:
        script = Path(__file__).with_name("review_flood.py")
        arguments = [str(server.port), str(pki.path("serving-ca")), METRIC, str(seconds)]
        self.process = subprocess.Popen(
            [sys.executable, str(script), *arguments, str(CONNECTIONS)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Flood:
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "started\n", "the flood got no answer"
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()

    def summary(self) -> dict[str, Any]:
        output, _ = self.process.communicate(timeout=40)
        assert self.process.returncode == 0
        summary: dict[str, Any] = json.loads(output)
        return summary


def report(name: str, reads: Reads, flood: dict[str, Any]) -> None:
    print(
        f"\n{name}: HPA reads {dict(reads.codes)}, p99 {reads.p99 * 1000:.0f} ms, "
        f"max {max(reads.latencies) * 1000:.0f} ms; flood answers {flood['codes']}, "
        f"slowest by code {flood['slowest']} s, unanswered {flood['unanswered']}"
    )


def test_hpa_reads_stay_fast_while_random_tokens_flood_a_slow_review_api(
    start_hpa: Callable[..., HPAClient], pki: PKI, hpa_allowed: FakeKube
) -> None:
    # Decisions and tokens live 2 s here, so the HPA's are reviewed again during the flood.
    hpa_allowed.review_delay = 0.5
    hpa = start_hpa(ttl=2.0)
    token_reviews = hpa_allowed.token_reviews
    access_reviews = len(hpa_allowed.access_reviews)
    with Flood(hpa.server, pki, seconds=8) as flood:
        reads = hpa.read_for(8)
        summary = flood.summary()
    report("slow review API", reads, summary)
    assert reads.codes == {200: len(reads.latencies)}
    assert reads.p99 < 1.0
    assert set(summary["codes"]) <= {"401", "429", "503"}
    assert sum(summary["codes"].values()) > CONNECTIONS
    assert max(summary["slowest"].values()) < REVIEW_TIMEOUT + SLACK
    assert (summary["unanswered"], summary["errors"]) == (0, {})
    # The flood reached the slow API, and the HPA's decisions were reviewed again meanwhile.
    assert hpa_allowed.token_reviews - token_reviews > 10
    assert len(hpa_allowed.access_reviews) - access_reviews >= 4


def test_a_hung_review_api_answers_the_flood_within_the_deadline_and_the_hpa_at_once(
    start_hpa: Callable[..., HPAClient], pki: PKI, hpa_allowed: FakeKube
) -> None:
    hpa = start_hpa()  # default cache TTLs (10 s) and review deadlines (5 s)
    hpa_allowed.reviews_hang = True
    with Flood(hpa.server, pki, seconds=REVIEW_TIMEOUT + 2) as flood:
        reads = hpa.read_for(4)
        # A read whose decision is not cached waits for the deadline, then is a 503.
        started = time.perf_counter()
        try:
            uncached: Answer | None = hpa.proxied.get(
                f"{BASE}/predicted_requests_rate", HPA_HEADERS
            )
        except TimeoutError:
            uncached = None
        waited = time.perf_counter() - started
        summary = flood.summary()
    report("hung review API", reads, summary)
    print(f"uncached decision: {uncached and uncached.status} after {waited:.2f} s")
    assert reads.codes == {200: len(reads.latencies)}
    assert reads.p99 < 1.0
    assert uncached is not None, f"no answer within {waited:.1f} s"
    assert_unavailable(uncached)
    assert waited < REVIEW_TIMEOUT + SLACK
    assert set(summary["codes"]) <= {"429", "503"}
    assert "503" in summary["codes"]  # some waited for the deadline...
    assert max(summary["slowest"].values()) < REVIEW_TIMEOUT + SLACK  # ...and no longer
    assert summary["slowest"]["429"] < SLACK  # the rest were refused at once
    assert (summary["unanswered"], summary["errors"]) == (0, {})


def test_a_failing_review_is_remembered_briefly_not_asked_again_per_request(
    server: Server, pki: PKI, fake_kube: FakeKube
) -> None:
    fake_kube.down = True
    ca = pki.path("serving-ca")
    with Client(server.port, ca) as stranger, Client(server.port, ca, pki.front_proxy) as proxy:
        for _ in range(5):
            assert_unavailable(stranger.get(METRIC, {"Authorization": "Bearer no-such-token"}))
            assert_unavailable(proxy.get(METRIC, HPA_HEADERS))
        assert fake_kube.unavailable_answers == 2  # one TokenReview, one SubjectAccessReview
        time.sleep(kube.ERROR_TTL + 0.1)
        assert_unavailable(stranger.get(METRIC, {"Authorization": "Bearer no-such-token"}))
        assert fake_kube.unavailable_answers == 3  # asked again once the error has expired


def assert_unavailable(answer: Answer) -> None:
    body = answer.json()
    assert (answer.status, body["kind"], body["reason"]) == (503, "Status", "ServiceUnavailable")
    assert int(answer.headers["Retry-After"]) >= 1


def test_review_deadlines_are_flags_with_a_default_under_the_hpa_sync_period() -> None:
    parser = argparse.ArgumentParser()
    flags.add_flags(parser)
    defaults = flags.from_args(parser.parse_args([]))
    assert defaults.authentication.token_webhook_timeout == REVIEW_TIMEOUT == 5.0
    assert defaults.authorization.webhook_timeout == REVIEW_TIMEOUT
    given = flags.from_args(
        parser.parse_args(
            ["--authentication-token-webhook-timeout=0s", "--authorization-webhook-timeout=1m"]
        )
    )
    assert given.authorization.webhook_timeout == 60.0
    with pytest.raises(ConfigError) as refused:
        given.validate()
    assert "--authentication-token-webhook-timeout: must be positive" in refused.value.problems
