"""deploy/ and examples/ as kubectl renders them, accepted by the real kube-apiserver.

The cluster is v1.20: it serves PodDisruptionBudget as policy/v1beta1 and HPA as
autoscaling/v2beta2, the same schema as policy/v1 and autoscaling/v2, which the manifests use
for current clusters (`ControlPlane.as_served` maps them for the older server). It has no
cert-manager, whose kinds get minimal CRDs here so that the overlay's objects can be
validated at all. Everything is a server-side dry run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import adapter
from tests.e2e.cluster import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def minimal_crd(group: str, version: str, kind: str, plural: str) -> dict:
    """A CustomResourceDefinition that accepts any object of the kind: enough for a server-side
    dry run of manifests whose operator the test cluster does not run."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


CERT_MANAGER_CRDS = [
    minimal_crd("cert-manager.io", "v1", kind, plural)
    for kind, plural in (("Issuer", "issuers"), ("Certificate", "certificates"))
]
KEDA_CRDS = [
    minimal_crd("keda.sh", "v1alpha1", kind, plural)
    for kind, plural in (
        ("ScaledObject", "scaledobjects"),
        ("TriggerAuthentication", "triggerauthentications"),
    )
]
OVERLAY_CRDS = {
    "cert-manager": (CERT_MANAGER_CRDS, "certificates.cert-manager.io"),
    "prometheus-rules": (
        [minimal_crd("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules")],
        "prometheusrules.monitoring.coreos.com",
    ),
}
"""Overlays whose kinds need CRDs on the test cluster -> those CRDs and a resource to wait for."""


def render(path: Path) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


REMOVED = {
    "policy/v1beta1": "1.25",
    "autoscaling/v2beta1": "1.25",
    "autoscaling/v2beta2": "1.26",
    "apiregistration.k8s.io/v1beta1": "1.22",
    "rbac.authorization.k8s.io/v1beta1": "1.22",
    "apiextensions.k8s.io/v1beta1": "1.22",
}
"""API versions current clusters no longer serve -> the release that removed them."""
KUSTOMIZATIONS = [
    "deploy",
    "deploy/overlays/e2e",
    "deploy/overlays/cert-manager",
    "deploy/overlays/keda",
    "deploy/overlays/prometheus-rules",
]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_no_manifest_uses_an_api_version_current_clusters_removed(folder: str) -> None:
    removed = [
        f"{d['kind']} {d['metadata']['name']}: {d['apiVersion']}, gone in "
        f"{REMOVED[d['apiVersion']]}"
        for d in render(ROOT / folder)
        if d["apiVersion"] in REMOVED
    ]
    assert removed == []


def dry_run(cluster: ControlPlane, documents: list[dict]) -> None:
    documents = cluster.as_served(documents)
    namespaces = [d for d in documents if d["kind"] == "Namespace"]
    if namespaces:
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces))
    done = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(documents), check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(documents), done.stdout


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_kustomizations_render_and_the_api_server_accepts_them(
    cluster: ControlPlane, folder: str
) -> None:
    documents = render(ROOT / folder)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"} <= kinds
    if folder.endswith("keda"):
        assert "APIService" not in kinds  # KEDA owns the external metrics API there
    else:
        api_service = next(d for d in documents if d["kind"] == "APIService")
        assert "insecureSkipTLSVerify" not in api_service["spec"]
    overlay = Path(folder).name
    if overlay in OVERLAY_CRDS:
        crds, resource = OVERLAY_CRDS[overlay]
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
        cluster.wait_until(
            lambda: cluster.kubectl("get", resource, "-A", check=False).returncode == 0,
            30,
            f"the {overlay} CRDs",
        )
    dry_run(cluster, documents)


def test_the_keda_examples_are_accepted(cluster: ControlPlane) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(KEDA_CRDS))
    cluster.wait_until(
        lambda: cluster.kubectl("get", "scaledobjects.keda.sh", "-A", check=False).returncode == 0,
        30,
        "the KEDA CRDs",
    )
    documents = []
    for path in sorted((ROOT / "examples" / "keda").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    triggers = [
        t["type"] for d in documents if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"]
    ]
    assert {"external", "external-push", "metrics-api"} <= set(triggers)
    dry_run(cluster, documents)


def test_the_seed_examples_are_accepted(cluster: ControlPlane) -> None:
    documents = []
    for path in sorted((ROOT / "examples" / "seed").glob("*.yaml")):
        if path.name == "adapter-config.yaml":
            config = adapter.load_config(path.read_text(), str(path))
            assert [t.name for t in config.targets] == ["nginx"]
            continue
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert {d["kind"] for d in documents} == {
        "StatefulSet",
        "Service",
        "Ingress",
        "Deployment",
        "HorizontalPodAutoscaler",
    }
    dry_run(cluster, documents)
