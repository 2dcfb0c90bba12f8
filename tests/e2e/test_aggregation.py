"""The adapter behind a real kube-apiserver: aggregator proxying with front-proxy
certificates, legacy discovery, real TokenReview and SubjectAccessReview, and the published
extension-apiserver-authentication ConfigMap as the only source of trust."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import ControlPlane
from tests.e2e.conftest import Registered, token
from tests.harness import write_kubeconfig

BASE = "/apis/external.metrics.k8s.io/v1beta1"
METRIC = f"{BASE}/namespaces/shop/predicted_replicas"


def direct_kubeconfig(tmp_path: Path, adapter: Registered, user: dict[str, str]) -> Path:
    """A kubeconfig that talks to the adapter itself, not through kube-apiserver."""
    return write_kubeconfig(
        tmp_path / "direct.kubeconfig",
        f"https://127.0.0.1:{adapter.port}",
        adapter.tls_dir / "ca.crt",
        user,
    )


def test_apiservice_is_available(cluster: ControlPlane, adapter: Registered) -> None:
    done = cluster.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json")
    conditions = {c["type"]: c for c in json.loads(done.stdout)["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True", conditions


def test_kubectl_reads_the_metric_through_the_aggregator(
    cluster: ControlPlane, adapter: Registered
) -> None:
    done = cluster.kubectl("get", "--raw", f"{METRIC}?labelSelector=target%3Dweb")
    (item,) = json.loads(done.stdout)["items"]
    assert (item["metricLabels"], item["value"]) == ({"target": "web"}, "5")
    missing = cluster.kubectl("get", "--raw", f"{BASE}/namespaces/shop/unknown", check=False)
    assert (
        "Error from server (NotFound): the server could not find the metric unknown"
        in missing.stderr
    )


def test_discovery_through_the_aggregator_lists_the_metric(
    cluster: ControlPlane, adapter: Registered
) -> None:
    done = cluster.kubectl("api-resources", "--api-group=external.metrics.k8s.io", "-o", "name")
    assert done.stdout.split() == ["predicted_replicas.external.metrics.k8s.io"]


def test_the_aggregator_loads_the_openapi_document(
    cluster: ControlPlane, adapter: Registered
) -> None:
    """kube-apiserver downloads /openapi/v2 a second after the APIService appears and merges
    it into its own; a 404 (the adapter's answer before it published documents) is logged as
    `loading OpenAPI spec for "v1beta1.external.metrics.k8s.io" failed with: OpenAPI spec
    does not exist` and retried with backoff.

    v1.20's first download often races the availability check: its own proxy answers
    `503 service unavailable` without asking the adapter, and the download is retried a
    second after the APIService turns Available. That line is not the adapter's doing."""
    started = time.monotonic()
    metric_path = f"{BASE}/namespaces/{{namespace}}/{{metric}}"
    merged: dict = {}
    while time.monotonic() - started < 20:
        merged = json.loads(cluster.kubectl("get", "--raw", "/openapi/v2").stdout)
        if metric_path in merged["paths"]:
            break
        time.sleep(1)
    time.sleep(max(0.0, 10 - (time.monotonic() - started)))
    log = (cluster.dir / "kube-apiserver.log").read_text(errors="replace")
    failures = [
        line
        for line in log.splitlines()
        if 'loading OpenAPI spec for "v1beta1.external.metrics.k8s.io" failed' in line
        and "ResponseCode: 503, Body: service unavailable" not in line
    ]
    assert failures == []
    answers = merged["paths"][metric_path]["get"]["responses"]
    assert answers["200"]["schema"] == {
        "$ref": "#/definitions/io.k8s.metrics.pkg.apis.external_metrics.v1beta1."
        "ExternalMetricValueList"
    }
    value = merged["definitions"][
        "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValue"
    ]
    assert value["x-kubernetes-group-version-kind"] == [
        {"group": "external.metrics.k8s.io", "kind": "ExternalMetricValue", "version": "v1beta1"}
    ]


@pytest.fixture(scope="module")
def reader_role(cluster: ControlPlane) -> str:
    """The ClusterRole a deployment offers for reading external metrics."""
    cluster.kubectl(
        "create",
        "clusterrole",
        "external-metrics-reader",
        "--verb=get,list",
        "--resource=*.external.metrics.k8s.io",
    )
    return "external-metrics-reader"


@pytest.mark.usefixtures("reader_role")
def test_a_user_with_rbac_passes_both_authorizers(
    cluster: ControlPlane, adapter: Registered
) -> None:
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        "viewer-reads-metrics",
        "--clusterrole=external-metrics-reader",
        "--user=viewer",
        check=False,
    )
    viewer = cluster.kubeconfig("viewer", "viewer", [])
    done = cluster.kubectl("get", "--raw", METRIC, kubeconfig=viewer)
    assert json.loads(done.stdout)["items"][0]["value"] == "5"
    stranger = cluster.kubeconfig("stranger", "stranger", [])
    denied = cluster.kubectl("get", "--raw", METRIC, kubeconfig=stranger, check=False)
    assert "Forbidden" in denied.stderr


@pytest.mark.usefixtures("reader_role")
def test_service_account_tokens_are_reviewed_and_authorized_by_the_cluster(
    cluster: ControlPlane, adapter: Registered, tmp_path: Path
) -> None:
    cluster.kubectl(
        "-n",
        "shop",
        "create",
        "rolebinding",
        "reader-reads-metrics",
        "--clusterrole=external-metrics-reader",
        "--serviceaccount=shop:reader",
        check=False,
    )
    allowed = direct_kubeconfig(tmp_path, adapter, {"token": token(cluster, "shop", "reader")})
    done = cluster.kubectl("get", "--raw", METRIC, kubeconfig=allowed)
    assert json.loads(done.stdout)["items"][0]["value"] == "5"

    denied = direct_kubeconfig(tmp_path, adapter, {"token": token(cluster, "shop", "nobody")})
    done = cluster.kubectl("get", "--raw", METRIC, kubeconfig=denied, check=False)
    assert (
        "Error from server (Forbidden): predicted_replicas.external.metrics.k8s.io is forbidden: "
        'User "system:serviceaccount:shop:nobody" cannot list resource "predicted_replicas" '
        'in API group "external.metrics.k8s.io" in the namespace "shop"'
    ) in done.stderr

    forged = direct_kubeconfig(tmp_path, adapter, {"token": "not-a-real-token"})
    done = cluster.kubectl("get", "--raw", METRIC, kubeconfig=forged, check=False)
    assert "Unauthorized" in done.stderr


def test_cluster_client_certificates_are_trusted_from_the_published_configmap(
    cluster: ControlPlane, adapter: Registered, tmp_path: Path
) -> None:
    admin = cluster.kubeconfig("direct-admin", "root", ["system:masters"])
    config = json.loads(admin.read_text())
    user = config["users"][0]["user"]
    done = cluster.kubectl(
        "get", "--raw", METRIC, kubeconfig=direct_kubeconfig(tmp_path, adapter, user)
    )
    assert json.loads(done.stdout)["items"][0]["value"] == "5"
