"""End to end from the serving image: the adapter started by ``podman run``, registered behind
the APIService of the e2e control plane, with an HPA scaling on its forecast.

The scenario is ``test_hpa``'s (Prometheus history with an hourly burst, the ``deploy/``
e2e overlay, the nginx HPA on ``predicted_replicas``); only how the adapter starts differs. It
runs as the Deployment runs it: root filesystem read-only, a tmpfs at /tmp, UID 10001, no
capabilities, serving certificate, configuration and kubeconfig mounted read-only at the
Deployment's paths, on the host network (the Service points at localhost).

The image is ``make image``'s (``PMA_IMAGE`` names another). Without podman or the image the
module skips and says how to build it; with ``PMA_IMAGE_REQUIRED=1`` (``.ci/run`` sets it)
that is a failure instead. It must not leave a container behind: each one is removed by its
name, whatever the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.e2e import test_hpa as hpa
from tests.e2e.cluster import ControlPlane
from tests.e2e.conftest import VALUES
from tests.harness import write_kubeconfig
from tests.prometheus_harness import (
    PrometheusServer,
    ensure_prometheus,
    free_port,
    write_openmetrics,
)
from tests.samples import SEED_RULES

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ["bash", str(ROOT / "deploy" / "image" / "podman.sh")]
IMAGE = os.environ.get(
    "PMA_IMAGE", f"predictive-metrics-adapter:{metadata.version('predictive-metrics-adapter')}"
)
UID = 10001
MAX_IMAGE_BYTES = 400_000_000
COLD_START_SECONDS = 3.0
# Where deploy/base/deployment.yaml mounts them, and the kubeconfig next to them.
SERVING_CERT, CONFIG, KUBE = (
    "/var/run/serving-cert",
    "/etc/predictive-metrics-adapter",
    "/var/run/kubeconfig",
)

pytestmark = pytest.mark.timeout(600)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr}")
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """The image's name, once it is known to exist."""
    if shutil.which("podman") is None:
        problem = "podman is not installed"
    elif os.geteuid() != 0:
        problem = "not root (the project's podman storage is root's)"
    elif podman("image", "exists", IMAGE, check=False).returncode != 0:
        problem = f"no image {IMAGE} in the project's podman storage"
    else:
        return IMAGE
    message = f"{problem}: `make image` builds it"
    if os.environ.get("PMA_IMAGE_REQUIRED") == "1":
        pytest.fail(message + " (PMA_IMAGE_REQUIRED=1)")
    pytest.skip(message)


def mounted(directory: Path, files: dict[str, Path | str]) -> Path:
    """A folder for a read-only mount: `files` (name -> source file or text), readable by
    the image's user only, as a Secret or ConfigMap volume would be."""
    directory.mkdir()
    for name, source in files.items():
        target = directory / name
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_text(source)
        target.chmod(0o400)
        os.chown(target, UID, UID)
    directory.chmod(0o500)
    os.chown(directory, UID, UID)
    return directory


def container_command(name: str, image: str, mounts: dict[str, Path], *args: str) -> list[str]:
    """`podman run` for the adapter as the Deployment runs it; `mounts` maps the paths in the
    container to host folders, mounted read-only."""
    return [
        *PODMAN,
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        f"{UID}:{UID}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        *(f"--volume={source}:{target}:ro" for target, source in mounts.items()),
        image,
        "serve",
        "--bind-address",
        "127.0.0.1",
        "--tls-cert-file",
        f"{SERVING_CERT}/tls.crt",
        "--tls-private-key-file",
        f"{SERVING_CERT}/tls.key",
        *args,
    ]


def answers_readyz(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=1):
            return True
    except OSError:
        return False


@dataclasses.dataclass
class Started:
    name: str
    seconds_to_ready: float


@pytest.fixture(scope="module")
def from_image(
    cluster: ControlPlane, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Started]:
    """test_hpa's scenario with the adapter in a container; the HPA is not applied yet."""
    ensure_prometheus()
    directory = tmp_path_factory.mktemp("image")
    # Left over by test_hpa in the same cluster: the HPA must start from one replica.
    for kind in ("hpa", "deployment"):
        cluster.kubectl("-n", "default", "delete", kind, "nginx", "--ignore-not-found")
    now = int(time.time())
    aligned = now // 300 * 300
    burst_start = aligned + 420  # 2 to 7 minutes from now, inside the 10-minute lead time
    series = hpa.burst_workload(now // hpa.STEP * hpa.STEP, burst_start, "nginx-server", "nginx", 1)
    write_openmetrics(directory / "history.om", series)
    with PrometheusServer(directory / "prometheus", directory / "history.om") as prometheus:
        port = free_port()
        hpa._apply_deploy_overlay(cluster, directory, port)
        token = cluster.kubectl(
            "-n", "predictive-metrics", "create", "token", "predictive-metrics-adapter"
        ).stdout.strip()
        kubeconfig = write_kubeconfig(
            directory / "kubeconfig", cluster.url, Path(KUBE) / "ca.crt", {"token": token}
        )
        tls = directory / "tls"
        mounts = {
            SERVING_CERT: mounted(
                directory / "serving-cert", {"tls.crt": tls / "tls.crt", "tls.key": tls / "tls.key"}
            ),
            CONFIG: mounted(
                directory / "config",
                {"config.yaml": SEED_RULES + "forecasts:" + hpa.target("nginx", "nginx-server")},
            ),
            KUBE: mounted(
                directory / "kube", {"kubeconfig": kubeconfig, "ca.crt": cluster.dir / "ca.crt"}
            ),
        }
        name = f"predictive-metrics-adapter-e2e-{port}"
        command = container_command(
            name,
            image,
            mounts,
            "--secure-port",
            str(port),
            "--kubeconfig",
            f"{KUBE}/kubeconfig",
            "--config",
            f"{CONFIG}/config.yaml",
            "--prometheus-url",
            prometheus.url,
            "--refresh-interval",
            "20s",
        )
        began = time.monotonic()
        cluster.spawn("adapter-image", command)
        try:
            cluster.wait_until(
                lambda: answers_readyz(port, tls / "ca.crt"), 60, "the container's /readyz"
            )
            started = Started(name, time.monotonic() - began)
            cluster.wait_until(
                lambda: (
                    cluster.kubectl(
                        "get",
                        "--raw",
                        f"{hpa.GROUP}/predicted_replicas?labelSelector=target%3Dnginx",
                        check=False,
                    ).returncode
                    == 0
                ),
                90,
                "predicted_replicas through the aggregator",
            )
            yield started
        finally:
            cluster.kubectl("-n", "default", "delete", "hpa", "nginx", "--ignore-not-found")
            cluster.kubectl(
                "delete", "apiservice", "v1beta1.external.metrics.k8s.io", "--ignore-not-found"
            )
            cluster.stop("adapter-image")  # podman passes SIGTERM on to the adapter
            podman("rm", "--force", "--ignore", name, check=False)


def test_the_serving_image_is_small_and_holds_no_torch(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    found = podman(
        "run",
        "--rm",
        "--read-only",
        "--entrypoint",
        "python",
        image,
        "-c",
        "import importlib.util; print(importlib.util.find_spec('torch') is not None)",
    ).stdout.strip()
    print(f"\n{image}: {size / 1e6:.0f} MB uncompressed, torch inside: {found}")
    assert found == "False"
    assert size <= MAX_IMAGE_BYTES


def test_the_container_runs_as_the_deployment_runs_it(from_image: Started) -> None:
    """UID 10001, nothing writable but /tmp."""
    print(
        f"\npodman run to /readyz, next to the control plane: {from_image.seconds_to_ready:.2f} s"
    )
    who = podman("exec", from_image.name, "id", "-u").stdout.strip()
    write = podman("exec", from_image.name, "touch", "/opt/adapter/x", check=False)
    scratch = podman("exec", from_image.name, "touch", "/tmp/x", check=False)
    assert who == str(UID)
    assert "Read-only file system" in write.stderr
    assert scratch.returncode == 0


def test_a_cold_start_is_ready_within_3_s(image: str, tmp_path: Path) -> None:
    """From `podman run` to /readyz answering, fixed values and no Kubernetes API (the image,
    not the cluster, is measured): the median of three starts."""
    tls = tmp_path / "tls"
    subprocess.run(
        [sys.executable, "-m", "apiservice", "certs", "serving", "--out-dir", str(tls)],
        capture_output=True,
        check=True,
    )
    mounts = {
        SERVING_CERT: mounted(
            tmp_path / "serving-cert", {"tls.crt": tls / "tls.crt", "tls.key": tls / "tls.key"}
        ),
        CONFIG: mounted(tmp_path / "config", {"values.yaml": VALUES}),
    }
    seconds = []
    for _ in range(3):
        port = free_port()
        name = f"predictive-metrics-adapter-cold-{port}"
        command = container_command(
            name,
            image,
            mounts,
            "--secure-port",
            str(port),
            "--authentication-skip-lookup",
            "--values-file",
            f"{CONFIG}/values.yaml",
        )
        log = tmp_path / f"{name}.log"
        began = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            while not answers_readyz(port, tls / "ca.crt"):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() - began < 60, log.read_text()
                time.sleep(0.02)
            seconds.append(time.monotonic() - began)
        finally:
            process.terminate()
            process.wait(30)
            podman("rm", "--force", "--ignore", name, check=False)
    print(f"\npodman run to /readyz: {', '.join(f'{s:.2f}' for s in seconds)} s")
    assert statistics.median(seconds) <= COLD_START_SECONDS


def test_the_apiservice_is_available(cluster: ControlPlane, from_image: Started) -> None:
    done = cluster.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json")
    conditions = {c["type"]: c for c in json.loads(done.stdout)["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True", conditions


def test_the_hpa_scales_to_the_replicas_forecast_in_the_container(
    cluster: ControlPlane, from_image: Started
) -> None:
    ahead = hpa.predicted(cluster, "nginx")  # read through the aggregator
    need_at_peak = min(
        10, math.ceil(hpa.COST * hpa.PEAK_RPS / (hpa.TARGET_PER_POD - hpa.BASE_PER_POD))
    )
    assert ahead == need_at_peak, (ahead, need_at_peak)
    cluster.apply(hpa.HPA)
    cluster.wait_until(
        lambda: hpa.deployment_replicas(cluster) == ahead,
        120,
        f"the Deployment at {ahead} replicas",
    )
    print("\n" + "\n".join(hpa.hpa_events(cluster)))
    assert any(f"New size: {ahead}" in line for line in hpa.hpa_events(cluster))
    assert hpa.condition(cluster, "ScalingActive").get("status") == "True"
