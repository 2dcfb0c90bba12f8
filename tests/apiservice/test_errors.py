"""Provider failures as the HPA sees them: an error Status, never an empty list, never a 0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import MetricNotFound, PredictionUnavailable
from apiservice.server import Server
from tests.fakes import FakeKube, FakeProvider
from tests.harness import Client, settings_for
from tests.pki import PKI

METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def with_provider(
    make_server: Callable[..., Server],
    pki: PKI,
    kubeconfig: Path,
    values_file: Path,
    fake_kube: FakeKube,
    provider: FakeProvider,
) -> Server:
    return make_server(settings_for(pki, kubeconfig, values_file), provider=provider)


def get(server: Server, pki: PKI) -> tuple[int, dict, dict[str, str]]:
    with Client(server.port, pki.path("serving-ca"), pki.admin) as client:
        answer = client.get(METRIC)
    return answer.status, answer.json(), dict(answer.headers)


def test_no_fresh_prediction_is_503_with_retry_after(
    with_provider: Server, pki: PKI, provider: FakeProvider
) -> None:
    provider.error = PredictionUnavailable(
        "no prediction for target web yet: warming up", retry_after=30
    )
    code, body, headers = get(with_provider, pki)
    assert (code, body["reason"], body["message"]) == (
        503,
        "ServiceUnavailable",
        "no prediction for target web yet: warming up",
    )
    assert headers["Retry-After"] == "30"


def test_an_empty_answer_from_a_provider_becomes_404_not_an_empty_list(
    with_provider: Server, pki: PKI
) -> None:
    code, body, _ = get(with_provider, pki)
    assert (code, body["reason"]) == (404, "NotFound")


def test_not_found_from_the_provider_is_404(
    with_provider: Server, pki: PKI, provider: FakeProvider
) -> None:
    provider.error = MetricNotFound(
        "the server could not find the metric predicted_replicas for namespace shop"
    )
    code, body, _ = get(with_provider, pki)
    assert (code, body["details"]) == (
        404,
        {"group": "external.metrics.k8s.io", "kind": "predicted_replicas"},
    )


def test_a_provider_bug_is_a_generic_500_that_leaks_nothing(
    with_provider: Server, pki: PKI, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.error = RuntimeError("secret internal detail at /var/lib/model")
    code, body, _ = get(with_provider, pki)
    assert (code, body["reason"]) == (500, "InternalError")
    assert body["message"] == "Internal error occurred: the server could not handle the request"
    assert "secret" not in str(body)
    assert "secret internal detail" in caplog.text  # logged once, with its traceback, for operators
