"""The command line as a user runs it: certs, local (make run), and settings validation."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.harness import Client
from tests.prometheus_harness import free_port

CLI = [sys.executable, "-m", "apiservice"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_certs_serving_prints_a_ready_apiservice_and_reuses_its_ca(tmp_path: Path) -> None:
    done = cli(
        "certs",
        "serving",
        "--out-dir",
        str(tmp_path),
        "--service",
        "pma",
        "--namespace",
        "mon",
        "--print",
        "apiservice",
    )
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    assert manifest["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    spec = manifest["spec"]
    assert spec["service"] == {"name": "pma", "namespace": "mon", "port": 443}
    assert "insecureSkipTLSVerify" not in spec
    assert base64.b64decode(spec["caBundle"]) == (tmp_path / "ca.crt").read_bytes()
    first_serving_cert = (tmp_path / "tls.crt").read_bytes()
    leaf = x509.load_pem_x509_certificate(first_serving_cert)
    assert "pma.mon.svc" in leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    for key in ("ca.key", "tls.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600
    again = cli(
        "certs", "serving", "--out-dir", str(tmp_path), "--service", "pma", "--namespace", "mon"
    )
    assert again.stdout.strip() == spec["caBundle"]  # same CA, so the APIService stays valid
    assert (tmp_path / "tls.crt").read_bytes() != first_serving_cert


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`make run`'s command, as a process; yields it and the commands it printed."""
    process = subprocess.Popen(
        [*CLI, "local", "--state-dir", str(tmp_path / "state"), "--secure-port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    commands: list[str] = []
    for line in process.stdout:
        if line.strip().startswith("kubectl "):
            commands.append(line.strip())
        if "Stop it with Ctrl-C" in line:
            break
    try:
        yield process, commands
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(15)
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()


def test_local_prints_kubectl_commands_that_work(
    local_server: tuple[subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    """`make run`: the replayed trace goes through history, forecast and replicas to kubectl."""
    process, commands = local_server
    assert len(commands) == 3, commands

    def run(command: str) -> dict:
        done = subprocess.run(
            shlex.split(command),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    resources = run(commands[0])["resources"]
    assert [r["name"] for r in resources] == ["predicted_replicas", "predicted_requests_rate"]
    (replicas,) = run(commands[1])["items"]
    assert replicas["metricLabels"]["target"] == "demo"
    assert 1 <= int(replicas["value"]) <= 20
    (load,) = run(commands[2])["items"]
    assert load["window"] == 900
    assert float(load["value"].rstrip("m")) > 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0


def test_certs_client_kubeconfig_reaches_a_server_that_trusts_its_ca(tmp_path: Path) -> None:
    assert (
        cli(
            "certs",
            "serving",
            "--out-dir",
            str(tmp_path),
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--print",
            "none",
        ).returncode
        == 0
    )
    port = free_port()
    process = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            str(port),
            "--tls-cert-file",
            str(tmp_path / "tls.crt"),
            "--tls-private-key-file",
            str(tmp_path / "tls.key"),
            "--client-ca-file",
            str(tmp_path / "ca.crt"),
            "--authentication-skip-lookup",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = cli(
            "certs",
            "client",
            "--ca-dir",
            str(tmp_path),
            "--user",
            "root",
            "--group",
            "system:masters",
            "--kubeconfig",
            str(tmp_path / "root.kubeconfig"),
            "--server",
            f"https://127.0.0.1:{port}",
        )
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE((tmp_path / "root.kubeconfig").stat().st_mode) == 0o600
        deadline = time.monotonic() + 20
        while True:
            result = subprocess.run(
                [
                    "kubectl",
                    "--kubeconfig",
                    str(tmp_path / "root.kubeconfig"),
                    "get",
                    "--raw",
                    "/apis/external.metrics.k8s.io/v1beta1",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.returncode == 0, result.stderr
        # No metrics configured: discovery still lists one resource, never an empty list.
        assert [r["name"] for r in json.loads(result.stdout)["resources"]] == ["externalmetrics"]
    finally:
        process.terminate()
        assert process.wait(15) == 0
        assert process.stderr is not None
        process.stderr.close()


def test_invalid_settings_name_every_problem_and_exit_2(tmp_path: Path) -> None:
    done = cli(
        "serve",
        "--secure-port",
        "70000",
        "--tls-cert-file",
        str(tmp_path / "nope.crt"),
        "--client-ca-file",
        str(tmp_path / "nope-ca.crt"),
        "--values-file",
        str(tmp_path / "v.yaml"),
        "--authorization-always-allow-paths",
        "healthz",
    )
    assert done.returncode == 2
    for problem in (
        "--secure-port: 70000",
        "--tls-cert-file and --tls-private-key-file are required",
        "nope.crt does not exist",
        "--client-ca-file",
        "--values-file",
        "'healthz' must start with '/'",
    ):
        assert problem in done.stderr, problem
    assert "6 problem(s)" in done.stderr


def test_bad_durations_are_rejected_by_the_parser() -> None:
    done = cli("serve", "--tls-reload-interval", "ten seconds")
    assert done.returncode == 2
    assert "invalid duration 'ten seconds'" in done.stderr


@pytest.mark.usefixtures("local_server")
def test_health_answers_on_the_served_port(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = yaml.safe_load((state / "admin.kubeconfig").read_text())
    server = config["clusters"][0]["cluster"]["server"]
    port = int(server.rsplit(":", 1)[1])
    with Client(port, state / "ca.crt", server_name="127.0.0.1") as client:
        assert client.get("/healthz").body == b"ok"
    assert os.access(state / "admin.kubeconfig", os.R_OK)
