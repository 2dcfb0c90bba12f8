"""Fixtures for tests against a real kube-apiserver: the control plane (once per session) and
this adapter registered behind its aggregator (once per module)."""

from __future__ import annotations

import dataclasses
import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import ControlPlane, adapter_command, control_plane
from tests.prometheus_harness import free_port

NAMESPACE, SERVICE = "predictive-metrics", "predictive-metrics-adapter"
VALUES = """
values:
  - {metric: predicted_replicas, namespace: shop, labels: {target: web}, value: 5}
"""


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("cluster")) as plane:
        yield plane


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest, cluster: ControlPlane) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.logs())


@dataclasses.dataclass
class Registered:
    port: int
    tls_dir: Path


def token(cluster: ControlPlane, namespace: str, account: str) -> str:
    cluster.kubectl("-n", namespace, "create", "serviceaccount", account, check=False)
    return cluster.kubectl("-n", namespace, "create", "token", account).stdout.strip()


@pytest.fixture(scope="module")
def adapter(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registered]:
    """The adapter as a process, with the RBAC a deployment gives it, behind an APIService.

    It gets no CA flags: the front-proxy and client CAs come from the ConfigMap that
    kube-apiserver publishes, read with the adapter's own (service account) credentials.
    """
    directory = tmp_path_factory.mktemp("adapter")
    port = free_port()
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    cluster.kubectl("create", "namespace", "shop", check=False)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        "predictive-metrics:auth-delegator",
        "--clusterrole=system:auth-delegator",
        f"--serviceaccount={NAMESPACE}:{SERVICE}",
        check=False,
    )
    cluster.kubectl(
        "-n",
        "kube-system",
        "create",
        "rolebinding",
        "predictive-metrics-auth-reader",
        "--role=extension-apiserver-authentication-reader",
        f"--serviceaccount={NAMESPACE}:{SERVICE}",
        check=False,
    )
    kubeconfig = cluster.write_kubeconfig(
        directory / "adapter.kubeconfig", {"token": token(cluster, NAMESPACE, SERVICE)}
    )
    tls = directory / "tls"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "apiservice",
            "certs",
            "serving",
            "--out-dir",
            str(tls),
            "--service",
            SERVICE,
            "--namespace",
            NAMESPACE,
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--port",
            str(port),
            "--print",
            "apiservice",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    values = directory / "values.yaml"
    values.write_text(VALUES)
    cluster.spawn(
        "adapter",
        adapter_command(
            port, tls, kubeconfig, "--values-file", str(values), "--log-level", "debug"
        ),
    )
    # The aggregator dials https://<externalName>:<APIService port>, with TLS server name
    # <service>.<namespace>.svc (checked against caBundle).
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"port": port}],
                },
            }
        )
    )
    cluster.apply(made.stdout)
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.check_hostname = False

    def ready() -> bool:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/readyz", context=context, timeout=1
            ):
                return True
        except OSError:
            return False

    cluster.wait_until(ready, 30, "the adapter to listen")
    path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"
    cluster.wait_until(
        lambda: cluster.kubectl("get", "--raw", path, check=False).returncode == 0,
        30,
        "the metric through the aggregator",
    )
    yield Registered(port=port, tls_dir=tls)
    cluster.kubectl("delete", "apiservice", "v1beta1.external.metrics.k8s.io", check=False)
    cluster.stop("adapter")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
