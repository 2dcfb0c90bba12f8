"""`PrometheusSource`: how it authenticates and retries (against a TLS stand-in that checks
credentials), and how it chunks and fails (against a real Prometheus)."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from adapter import PrometheusSettings, PrometheusSource
from adapter.prometheus import QueryFailed, SourceUnavailable
from tests.harness import LoopThread, serve_app
from tests.pki import PKI
from tests.prometheus_harness import (
    PrometheusServer,
    ensure_prometheus,
    seed_workload,
    write_openmetrics,
)


class Guarded:
    """A query_range endpoint that demands credentials and fails the first N calls with 503."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail_first = 0
        self.expected = ""

    async def query_range(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("Authorization", ""))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, text="overloaded")
        if request.headers.get("Authorization") != self.expected:
            return web.Response(status=401, text="who are you")
        start, step = int(float(request.query["start"])), int(request.query["step"])
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [
                        {"metric": {"job": "x"}, "values": [[start, "1.5"], [start + step, "NaN"]]}
                    ],
                },
            }
        )


@pytest.fixture
def guarded(loop_thread: LoopThread, pki: PKI) -> Iterator[tuple[Guarded, str]]:
    stand_in = Guarded()
    app = web.Application()
    app.router.add_get("/api/v1/query_range", stand_in.query_range)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.serving.cert, pki.serving.key)
    runner, port = loop_thread.run(serve_app(app, context))
    yield stand_in, f"https://localhost:{port}"
    loop_thread.run(runner.cleanup())


def test_bearer_token_is_read_from_its_file_on_every_request(
    guarded: tuple[Guarded, str], pki: PKI, tmp_path: Path
) -> None:
    stand_in, url = guarded
    token = tmp_path / "token"
    token.write_text("first\n")
    source = PrometheusSource(
        PrometheusSettings(url=url, ca_file=pki.path("serving-ca"), token_file=token)
    )
    stand_in.expected = "Bearer first"
    ((stamps, values),) = source.query_range("up", 600, 660, 60)
    assert list(stamps) == [600, 660]
    assert values[0] == 1.5
    assert np.isnan(values[1])
    token.write_text("second")  # a projected token rotated
    stand_in.expected = "Bearer second"
    source.query_range("up", 600, 660, 60)
    stand_in.expected = "Bearer third"
    with pytest.raises(SourceUnavailable, match="refused the credentials") as caught:
        source.query_range("up", 600, 660, 60)
    assert "second" not in str(caught.value)


def test_basic_auth_and_retry_with_backoff(
    guarded: tuple[Guarded, str], pki: PKI, tmp_path: Path
) -> None:
    stand_in, url = guarded
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = PrometheusSettings(
        url=url,
        ca_file=pki.path("serving-ca"),
        username="reader",
        password_file=password,
        retries=3,
    )
    stand_in.expected = "Basic " + base64.b64encode(b"reader:s3cret").decode()
    stand_in.fail_first = 2
    began = time.monotonic()
    PrometheusSource(settings).query_range("up", 600, 600, 60)
    assert len(stand_in.seen) == 3  # two 503s, then the answer
    assert time.monotonic() - began >= 0.5  # backed off in between


def test_an_untrusted_server_certificate_is_refused(guarded: tuple[Guarded, str], pki: PKI) -> None:
    _, url = guarded
    with pytest.raises(SourceUnavailable, match="unreachable"):
        PrometheusSource(
            PrometheusSettings(url=url, ca_file=pki.path("client-ca"), retries=0)
        ).query_range("up", 0, 60, 60)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    ensure_prometheus()
    directory = tmp_path_factory.mktemp("prom")
    end = int(time.time()) // 86400 * 86400
    workload = seed_workload(end - 15 * 86400, 15, 60)
    write_openmetrics(directory / "h.om", workload.series())
    with PrometheusServer(directory / "data", directory / "h.om") as server:
        yield server.url, end


def test_long_ranges_are_chunked_under_the_points_limit(prometheus: tuple[str, int]) -> None:
    url, end = prometheus
    source = PrometheusSource(PrometheusSettings(url=url))
    query = 'sum(kube_statefulset_status_replicas_ready{namespace="default",statefulset="nginx"})'
    start = end - 14 * 86400
    ((stamps, values),) = source.query_range(query, start, end - 60, 60)
    assert len(stamps) == 14 * 1440  # 20,160 points, in chunks of 10,000 under the limit
    assert source.queries == 3
    assert np.all(np.diff(stamps) == 60)
    assert np.all(values >= 1)


def test_a_bad_query_and_an_absent_server_are_told_apart(prometheus: tuple[str, int]) -> None:
    url, end = prometheus
    with pytest.raises(QueryFailed, match="rejected"):
        PrometheusSource(PrometheusSettings(url=url)).query_range("sum(rate(", end - 600, end, 60)
    with pytest.raises(SourceUnavailable, match="unreachable"):
        PrometheusSource(PrometheusSettings(url="http://127.0.0.1:9", retries=0)).query_range(
            "up", end - 600, end, 60
        )


def test_settings_problems_are_named() -> None:
    problems = PrometheusSettings(
        url="ftp://x", token_file=Path("/nonexistent-token"), username="u", timeout=0
    ).problems()
    assert any("must be an http(s) URL" in p for p in problems)
    assert any("--prometheus-token-file" in p for p in problems)
    assert any("go together" in p for p in problems)
    assert any("not both" in p for p in problems)
    assert any("--prometheus-timeout" in p for p in problems)


def test_a_password_in_the_url_never_reaches_a_message() -> None:
    settings = PrometheusSettings(url="http://reader:s3cret@127.0.0.1:9/", timeout=0.5, retries=0)
    assert settings.shown_url == "http://127.0.0.1:9/"
    with pytest.raises(SourceUnavailable) as caught:
        PrometheusSource(settings).query_range("up", 0, 60, 60)
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1:9" in str(caught.value)
    with pytest.raises(SourceUnavailable) as listed:
        PrometheusSource(settings).series_names("{job='x'}")
    assert "s3cret" not in str(listed.value)
    bad = PrometheusSettings(url="ftp://reader:s3cret@host/")
    assert all("s3cret" not in problem for problem in bad.problems())
