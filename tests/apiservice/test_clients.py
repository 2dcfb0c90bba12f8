"""Real clients against the real server over TLS: kubectl and the official Python client."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from apiservice.server import Server
from tests.fakes import FakeKube
from tests.harness import kubeconfig_for, write_kubeconfig
from tests.pki import PKI, Pair

BASE = "/apis/external.metrics.k8s.io/v1beta1"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


def config(
    tmp_path: Path, server: Server, pki: PKI, identity: Pair, name: str = "kubeconfig"
) -> Path:
    return kubeconfig_for(
        tmp_path / name, f"https://localhost:{server.port}", pki.path("serving-ca"), identity
    )


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_kubectl
def test_kubectl_reads_discovery_and_a_metric_value(
    server: Server, pki: PKI, tmp_path: Path
) -> None:
    admin = config(tmp_path, server, pki, pki.admin)
    done = kubectl(admin, "get", "--raw", BASE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resources"][0]["name"] == "predicted_replicas"
    done = kubectl(
        admin,
        "get",
        "--raw",
        f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=target%3Dweb",
    )
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)["items"]
    assert (item["metricLabels"]["target"], item["value"]) == ("web", "7")


@needs_kubectl
def test_kubectl_shows_status_errors_by_reason(
    server: Server, pki: PKI, tmp_path: Path, fake_kube: FakeKube
) -> None:
    admin = config(tmp_path, server, pki, pki.admin)
    done = kubectl(admin, "get", "--raw", f"{BASE}/namespaces/shop/nothing")
    assert done.returncode == 1
    assert (
        "Error from server (NotFound): the server could not find the metric nothing" in done.stderr
    )
    done = kubectl(
        admin,
        "get",
        "--raw",
        f"{BASE}/namespaces/shop/predicted_replicas?labelSelector=a%3D%3Db%3Dc",
    )
    assert "Error from server (BadRequest): invalid labelSelector" in done.stderr
    alice = config(tmp_path, server, pki, pki.alice, "alice")
    done = kubectl(alice, "get", "--raw", f"{BASE}/namespaces/shop/predicted_replicas")
    assert "Error from server (Forbidden)" in done.stderr
    assert 'User "alice" cannot list resource "predicted_replicas"' in done.stderr


@needs_kubectl
def test_kubectl_with_a_bearer_token(
    server: Server, pki: PKI, tmp_path: Path, fake_kube: FakeKube
) -> None:
    fake_kube.tokens["t0ken"] = {"username": "dave", "groups": ["system:authenticated"]}
    fake_kube.allow.add(("dave", "list", "predicted_replicas"))
    anonymous = write_kubeconfig(
        tmp_path / "token",
        f"https://localhost:{server.port}",
        pki.path("serving-ca"),
        {"token": "t0ken"},
    )
    done = kubectl(anonymous, "get", "--raw", f"{BASE}/namespaces/shop/predicted_replicas")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["items"]) == 2


def test_official_python_client_lists_the_metric(server: Server, pki: PKI, tmp_path: Path) -> None:
    api = kubernetes.config.new_client_from_config(
        config_file=str(config(tmp_path, server, pki, pki.admin))
    )
    with api:
        listing: Any = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
            "external.metrics.k8s.io",
            "v1beta1",
            "shop",
            "predicted_replicas",
            label_selector="target in (web)",
        )
        assert [item["value"] for item in listing["items"]] == ["7"]
        groups = kubernetes.client.ApisApi(api).get_api_versions()
        assert groups.groups[0].name == "external.metrics.k8s.io"
        with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
            kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
                "external.metrics.k8s.io",
                "v1beta1",
                "shop",
                "predicted_replicas",
                label_selector="target=nobody",
            )
        assert caught.value.status == 404
        assert json.loads(caught.value.body or "{}")["reason"] == "NotFound"
