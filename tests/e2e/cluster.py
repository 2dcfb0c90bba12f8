"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and
kube-controller-manager (with the HPA controller) v1.20.2.

The binaries come from `build_control_plane.sh` (built once per machine from Debian's source
package into a cache outside the repository). The PKI is minted with this project's `certs`
package: cluster CA, front-proxy CA (kube-apiserver proxies aggregated APIs with its
front-proxy client certificate), an admin certificate, and a service-account key pair.

Every process is started here, logs to the scratch directory and is stopped by PID; logs are
printed when a test fails.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs import files, issuing
from tests import harness
from tests.prometheus_harness import free_port

HERE = Path(__file__).parent
DAY = datetime.timedelta(days=1)
OLDER = {"policy/v1": "policy/v1beta1", "autoscaling/v2": "autoscaling/v2beta2"}
"""API versions the manifests use (current clusters) -> the same schema as v1.20 serves it."""


class ControlPlaneUnavailable(RuntimeError):
    """The control plane binaries could not be built or started."""


def adapter_command(port: int, tls: Path, kubeconfig: Path, *flags: str) -> list[str]:
    """The adapter as a process on loopback: serving cert from `tls`, cluster access from
    `kubeconfig`, and what else `flags` add (a provider, logging)."""
    return [
        sys.executable,
        "-m",
        "apiservice",
        "serve",
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        str(port),
        "--tls-cert-file",
        str(tls / "tls.crt"),
        "--tls-private-key-file",
        str(tls / "tls.key"),
        "--kubeconfig",
        str(kubeconfig),
        *flags,
    ]


def binaries() -> Path:
    """The directory holding kube-apiserver (built on first use, minutes; then instant)."""
    done = subprocess.run(
        ["bash", str(HERE / "build_control_plane.sh")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ControlPlaneUnavailable(f"building the control plane failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class ControlPlane:
    """etcd + kube-apiserver with the aggregation layer configured."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.bin = binaries()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._pki()
        self.admin_kubeconfig = self.kubeconfig("admin", "admin", ["system:masters"])

    # --- PKI ---------------------------------------------------------------------------

    def _pki(self) -> None:
        d = self.dir
        self.ca = issuing.new_ca("kubernetes-ca", valid_for=DAY)
        files.write_issued(self.ca, d / "ca.crt", d / "ca.key")
        front = issuing.new_ca("front-proxy-ca", valid_for=DAY)
        files.write_issued(front, d / "front-proxy-ca.crt", d / "front-proxy-ca.key")
        names = ["localhost", "127.0.0.1", "10.0.0.1", "kubernetes", "kubernetes.default.svc"]
        files.write_issued(
            issuing.issue_serving(self.ca, names, valid_for=DAY),
            d / "apiserver.crt",
            d / "apiserver.key",
        )
        files.write_issued(
            issuing.issue_client(front, "front-proxy-client", valid_for=DAY),
            d / "front-proxy-client.crt",
            d / "front-proxy-client.key",
        )
        key = ec.generate_private_key(ec.SECP256R1())
        files.write_pem(
            d / "sa.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            private=True,
        )
        files.write_pem(
            d / "sa.pub",
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            private=False,
        )

    def kubeconfig(self, name: str, user: str, groups: list[str]) -> Path:
        """A kubeconfig for a client certificate signed by the cluster CA."""
        issued = issuing.issue_client(self.ca, user, groups, valid_for=DAY)
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        files.write_issued(issued, cert, key)
        return self.write_kubeconfig(
            self.dir / f"{name}.kubeconfig",
            {"client-certificate": str(cert), "client-key": str(key)},
        )

    def write_kubeconfig(self, path: Path, user: Mapping[str, str]) -> Path:
        """Write a kubeconfig for this cluster with `user`'s credentials (cert files or token)."""
        return harness.write_kubeconfig(path, self.url, self.dir / "ca.crt", user)

    # --- processes -----------------------------------------------------------------------

    def start(self) -> None:
        d = self.dir
        etcd_port, peer_port = free_port(), free_port()
        self.spawn(
            "etcd",
            [
                "etcd",
                "--data-dir",
                str(d / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--log-level",
                "warn",
            ],
        )
        self.spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--advertise-address=127.0.0.1",
                "--insecure-port=0",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--client-ca-file={d / 'ca.crt'}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--requestheader-client-ca-file={d / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={d / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={d / 'front-proxy-client.key'}",
            ],
        )
        self.wait_until(
            lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
            60,
            "kube-apiserver ready",
        )
        self._start_controller_manager()
        # kube-apiserver publishes its authentication settings for aggregated servers.
        self.wait_until(
            lambda: (
                self.kubectl(
                    "-n",
                    "kube-system",
                    "get",
                    "configmap",
                    "extension-apiserver-authentication",
                    check=False,
                ).returncode
                == 0
            ),
            30,
            "extension-apiserver-authentication published",
        )

    def _start_controller_manager(self) -> None:
        """The controllers the e2e tests need: the HPA (5 s sync), namespaces, deployments."""
        config = self.kubeconfig("controller-manager", "system:kube-controller-manager", [])
        d = self.dir
        self.spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                "--controllers=serviceaccount,serviceaccount-token,namespace,garbagecollector,"
                "deployment,replicaset,horizontalpodautoscaling",
                "--horizontal-pod-autoscaler-sync-period=5s",
            ],
        )

    def spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        log.close()
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)

    def logs(self) -> str:
        parts = []
        for log in sorted(self.dir.glob("*.log")):
            parts.append(
                f"--- {log.name} (last lines)\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            )
        return "\n".join(parts)

    # --- helpers -----------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig or self.admin_kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def as_served(self, documents: list[dict]) -> list[dict]:
        """`documents` with every apiVersion this server does not serve replaced by its older
        equivalent (`OLDER`): the manifests stay written for current clusters."""
        served = set(self.kubectl("api-versions").stdout.split())
        return [
            {**doc, "apiVersion": OLDER[doc["apiVersion"]]}
            if doc["apiVersion"] not in served and doc["apiVersion"] in OLDER
            else doc
            for doc in documents
        ]

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def wait_until(self, condition: object, timeout: float, what: str) -> None:
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while not condition():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ControlPlaneUnavailable(
                        f"{name} exited with {process.returncode}\n{self.logs()}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.2)


@contextlib.contextmanager
def control_plane(directory: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(directory)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop_all()
