"""End to end: a real HPA controller scales a Deployment on the adapter's predictions, ahead of
a load peak that Prometheus' history says is coming.

- Prometheus holds 14 days of two seed-like workloads with an hourly 15-minute burst (20 -> 150
  requests/s): for ``nginx`` the history ends a few minutes before the next burst; for
  ``nginx-after`` it ends just after one.
- The adapter runs as a process with certificates from its own ``certs`` command, the
  ServiceAccount and RBAC of ``deploy/`` (applied from the e2e overlay), and trust read from the
  published extension-apiserver-authentication ConfigMap.
- An ``autoscaling/v2beta2`` HPA on ``predicted_replicas`` (AverageValue 1) plus CPU scales the
  ``nginx`` Deployment. There is no metrics-server, so the CPU metric is invalid: the HPA then
  still scales up on the valid metric, and never down — the "reactive floor" safety.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.e2e.cluster import ControlPlane, adapter_command
from tests.prometheus_harness import (
    PrometheusServer,
    ensure_prometheus,
    free_port,
    write_openmetrics,
)
from tests.samples import SEED_RULES

DAY, STEP = 86400, 60
BURST, BASE_RPS, PEAK_RPS = 900, 20.0, 150.0
BASE_PER_POD, COST, PER_POD_CAPACITY = 0.05, 0.004, 15.0
TARGET_PER_POD = 0.1  # targetUtilization 40 % of a 0.25-core request
ROOT = Path(__file__).resolve().parents[2]
GROUP = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default"

pytestmark = pytest.mark.timeout(600)


def burst_workload(end: int, burst_start: int, ingress: str, workload: str, seed: int) -> list:
    """14 days up to `end` (1-min samples) of an hourly burst, aligned so that one burst
    starts at `burst_start`; request and CPU counters, ready replicas."""
    rng = np.random.default_rng(seed)
    times = np.arange(end - 14 * DAY, end, STEP, dtype=np.int64)
    into = (times - burst_start) % 3600
    ramp = np.clip(np.minimum(into, BURST - into) / 120, 0, 1) * (into < BURST)
    rate = (BASE_RPS + (PEAK_RPS - BASE_RPS) * ramp) * (1 + 0.02 * rng.standard_normal(len(times)))
    lagged = np.concatenate([np.full(3, rate[0]), rate[:-3]])
    replicas = np.clip(np.ceil(lagged / PER_POD_CAPACITY), 1, 10)
    cpu = (BASE_PER_POD * replicas + COST * rate) * (1 + 0.03 * rng.standard_normal(len(times)))
    labels = {"namespace": "default"}
    return [
        (
            "nginx_ingress_controller_requests",
            "counter",
            {**labels, "ingress": ingress, "status": "200"},
            times,
            np.floor(np.cumsum(rate * STEP)),
        ),
        (
            "container_cpu_usage_seconds",
            "counter",
            {**labels, "pod": f"{workload}-0", "container": workload},
            times,
            np.cumsum(cpu * STEP),
        ),
        (
            "kube_statefulset_status_replicas_ready",
            "gauge",
            {**labels, "statefulset": workload},
            times,
            replicas,
        ),
    ]


def target(name: str, ingress: str) -> str:
    return f"""
- name: {name}
  namespace: default
  workload: {{kind: Deployment, name: {name}}}
  traffic:
  - metric: nginx_ingress_controller_requests_rate
    selector: {{ingress: {ingress}}}
  resource:
    query: >-
      sum(rate(container_cpu_usage_seconds_total{{namespace="default",container="{name}"}}[3m]))
    targetUtilization: 40
    request: 0.25
  replicas:
    query: 'sum(kube_statefulset_status_replicas_ready{{namespace="default",statefulset="{name}"}})'
  step: 5m
  history: 14d
  leadTime: 10m
  minReplicas: 1
  maxReplicas: 10
"""


@dataclasses.dataclass
class Scenario:
    burst_start: int  # when nginx's next burst begins (unix s)
    command: list[str]


@pytest.fixture(scope="module")
def scenario(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    ensure_prometheus()
    directory = tmp_path_factory.mktemp("hpa")
    now = int(time.time())
    aligned = now // 300 * 300
    burst_start = aligned + 420  # 2 to 7 minutes from now, inside the 10-minute lead time
    end = now // STEP * STEP
    series = burst_workload(end, burst_start, "nginx-server", "nginx", 1)
    series += burst_workload(end, aligned - 60 - BURST, "nginx-server-after", "nginx-after", 2)
    write_openmetrics(directory / "history.om", series)
    with PrometheusServer(directory / "prometheus", directory / "history.om") as prometheus:
        port = free_port()
        _apply_deploy_overlay(cluster, directory, port)
        config = directory / "config.yaml"
        config.write_text(
            SEED_RULES
            + "forecasts:"
            + target("nginx", "nginx-server")
            + target("nginx-after", "nginx-server-after")
        )
        kubeconfig = _service_account_kubeconfig(cluster, directory)
        command = adapter_command(
            port,
            directory / "tls",
            kubeconfig,
            "--config",
            str(config),
            "--prometheus-url",
            prometheus.url,
            "--refresh-interval",
            "20s",
        )
        cluster.spawn("adapter", command)
        cluster.wait_until(
            lambda: (
                cluster.kubectl(
                    "get",
                    "--raw",
                    f"{GROUP}/predicted_replicas?labelSelector=target%3Dnginx",
                    check=False,
                ).returncode
                == 0
            ),
            90,
            "predicted_replicas through the aggregator",
        )
        yield Scenario(burst_start, command)
        cluster.kubectl("delete", "hpa", "nginx", "--ignore-not-found")
        cluster.kubectl(
            "delete", "apiservice", "v1beta1.external.metrics.k8s.io", "--ignore-not-found"
        )
        if "adapter" in cluster.processes:
            cluster.stop("adapter")


def _apply_deploy_overlay(cluster: ControlPlane, directory: Path, port: int) -> None:
    """deploy/overlays/e2e, with the port of this run and a caBundle from our certs command."""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "apiservice",
            "certs",
            "serving",
            "--out-dir",
            str(directory / "tls"),
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--print",
            "ca-bundle",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "overlays" / "e2e")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    documents = cluster.as_served([doc for doc in yaml.safe_load_all(rendered) if doc])
    for doc in documents:
        if doc["kind"] == "Service":
            doc["spec"]["ports"][0]["port"] = port
        if doc["kind"] == "APIService":
            doc["spec"]["service"]["port"] = port
            doc["spec"]["caBundle"] = made.stdout.strip()
    text = yaml.safe_dump_all(documents)
    namespaces = yaml.safe_dump_all([doc for doc in documents if doc["kind"] == "Namespace"])
    cluster.kubectl("apply", "-f", "-", stdin=namespaces)
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text)  # everything validates
    cluster.kubectl("apply", "-f", "-", stdin=text)
    tls = directory / "tls"
    cluster.kubectl(
        "-n",
        "predictive-metrics",
        "create",
        "secret",
        "tls",
        "predictive-metrics-adapter-tls",
        f"--cert={tls / 'tls.crt'}",
        f"--key={tls / 'tls.key'}",
        check=False,
    )
    base64.b64decode(made.stdout.strip())  # a real bundle, not an empty placeholder


def _service_account_kubeconfig(cluster: ControlPlane, directory: Path) -> Path:
    token = cluster.kubectl(
        "-n", "predictive-metrics", "create", "token", "predictive-metrics-adapter"
    ).stdout.strip()
    return cluster.write_kubeconfig(directory / "adapter.kubeconfig", {"token": token})


def predicted(cluster: ControlPlane, name: str) -> int:
    out = cluster.kubectl(
        "get", "--raw", f"{GROUP}/predicted_replicas?labelSelector=target%3D{name}"
    ).stdout
    (item,) = json.loads(out)["items"]
    return int(item["value"])


HPA = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        resources: {requests: {cpu: 250m}}
---
apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata: {name: nginx, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: nginx}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric:
        name: predicted_replicas
        selector: {matchLabels: {target: nginx}}
      target: {type: AverageValue, averageValue: "1"}
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 40}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 1000, periodSeconds: 15}]
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 15}]
"""


def deployment_replicas(cluster: ControlPlane) -> int:
    return int(
        cluster.kubectl(
            "-n", "default", "get", "deployment", "nginx", "-o", "jsonpath={.spec.replicas}"
        ).stdout
    )


def hpa_events(cluster: ControlPlane) -> list[str]:
    events = json.loads(cluster.kubectl("-n", "default", "get", "events", "-o", "json").stdout)[
        "items"
    ]
    lines = []
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or ""):
        involved = event["involvedObject"]
        if involved["kind"] == "HorizontalPodAutoscaler" and event["reason"] == "SuccessfulRescale":
            lines.append(f"{event['lastTimestamp']}  {event['reason']}: {event['message']}")
    return lines


def condition(cluster: ControlPlane, kind: str) -> dict:
    hpa = json.loads(
        cluster.kubectl(
            "-n",
            "default",
            "get",
            "horizontalpodautoscalers.v2beta2.autoscaling",
            "nginx",
            "-o",
            "json",
        ).stdout
    )
    return next((c for c in hpa.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def test_the_hpa_scales_to_the_predicted_replicas_before_the_peak(
    cluster: ControlPlane, scenario: Scenario
) -> None:
    ahead = predicted(cluster, "nginx")
    need_at_peak = min(10, math.ceil(COST * PEAK_RPS / (TARGET_PER_POD - BASE_PER_POD)))
    assert ahead == need_at_peak, (ahead, need_at_peak)
    cluster.apply(HPA)
    cluster.wait_until(
        lambda: deployment_replicas(cluster) == ahead, 120, f"the Deployment at {ahead} replicas"
    )
    reached = time.time()
    lines = hpa_events(cluster)
    print(
        "\nHPA events (the burst starts at "
        f"{time.strftime('%H:%M:%S', time.gmtime(scenario.burst_start))} UTC; true load until then "
        f"{BASE_RPS:.0f} req/s, needing 2 replicas):"
    )
    print("\n".join("  " + line for line in lines))
    print(
        f"Deployment at {ahead} replicas at {time.strftime('%H:%M:%S', time.gmtime(reached))} UTC, "
        f"{scenario.burst_start - reached:.0f} s before the burst"
    )
    assert reached < scenario.burst_start, "the scale-up must happen before the peak"
    assert any(f"New size: {ahead}" in line for line in lines)
    assert condition(cluster, "ScalingActive").get("status") == "True"


def test_predicted_replicas_fall_once_a_peak_is_over(
    cluster: ControlPlane, scenario: Scenario
) -> None:
    after = predicted(cluster, "nginx-after")
    print(
        f"\nnginx-after: the burst ended a few minutes ago (10 ready replicas then); "
        f"predicted now: {after}"
    )
    assert after <= 3


def test_a_scratch_namespace_is_deleted_while_the_apiservice_is_registered(
    cluster: ControlPlane, scenario: Scenario
) -> None:
    cluster.kubectl("create", "namespace", "scratch-e2e")
    cluster.kubectl("delete", "namespace", "scratch-e2e", "--wait=false")
    began = time.monotonic()
    cluster.wait_until(
        lambda: cluster.kubectl("get", "namespace", "scratch-e2e", check=False).returncode != 0,
        90,
        "the namespace to go",
    )
    print(f"\nscratch namespace deleted in {time.monotonic() - began:.1f} s")


def test_stopping_the_adapter_holds_the_replicas_and_restarting_resumes(
    cluster: ControlPlane, scenario: Scenario
) -> None:
    cluster.wait_until(lambda: deployment_replicas(cluster) >= 2, 120, "the scale-up")
    held = deployment_replicas(cluster)
    cluster.stop("adapter")
    cluster.wait_until(
        lambda: condition(cluster, "ScalingActive").get("status") == "False",
        60,
        "the HPA to notice",
    )
    stopped = condition(cluster, "ScalingActive")
    print(f"\nadapter stopped: {stopped.get('reason')}: {stopped.get('message', '')[:160]}")
    time.sleep(15)  # three HPA syncs
    assert deployment_replicas(cluster) == held  # no scale-in on missing data
    cluster.spawn("adapter", scenario.command)
    cluster.wait_until(
        lambda: condition(cluster, "ScalingActive").get("status") == "True", 90, "the HPA to resume"
    )
    assert deployment_replicas(cluster) == held
