"""The HTTPS listener's bounds: connection cap, header and idle timeouts, memory per
connection, and malformed requests answered as a `Status` with one WARNING line.

The memory test runs the real `local` command (forecaster loaded, as in a pod) and tries
5,000 idle TLS connections against it; the others run a server in-process and talk to it
through raw TLS sockets, as an attacker would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apiservice.server import Server
from apiservice.settings import Settings
from tests.harness import settings_for
from tests.pki import PKI
from tests.prometheus_harness import free_port

METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"
DEPLOYMENT = Path(__file__).parents[2] / "deploy" / "base" / "deployment.yaml"


def deployment_memory_request() -> int:
    """The adapter container's memory request in deploy/base, in bytes (``600Mi``)."""
    (container,) = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"]
    request = container["resources"]["requests"]["memory"]
    assert request.endswith("Mi"), request
    return int(request.removesuffix("Mi")) * 2**20


def tls_connection(port: int, ca: Path, timeout: float = 10) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return context.wrap_socket(sock, server_hostname="localhost")
    except BaseException:
        sock.close()
        raise


def exchange(port: int, ca: Path, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; read the answer until the server closes the connection.

    The server may answer a large malformed request and close before all of it is sent (a
    431 after the first 64 KB of headers): a send cut short that way still reads the answer.
    """
    with tls_connection(port, ca) as sock:
        with contextlib.suppress(ssl.SSLEOFError, BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ssl.SSLError, ConnectionResetError):
            if not data:
                raise
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, v in fields}, body


def closed_by_server(sock: ssl.SSLSocket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (EOF, close_notify or reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True


def with_serving(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, serving=dataclasses.replace(settings.serving, **changes))


@pytest.fixture
def bounded(
    make_server: Callable[..., Server], pki: PKI, kubeconfig: Path, values_file: Path
) -> Callable[..., Server]:
    """A server as deployed, with some serving bounds changed."""

    def make(**serving: Any) -> Server:
        return make_server(with_serving(settings_for(pki, kubeconfig, values_file), **serving))

    return make


# Malformed requests: a Status each, and one WARNING line without traceback.

LONG_SELECTOR = f"GET {METRIC}?labelSelector=target%3D{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n"
HUGE_HEADER = f"GET {METRIC} HTTP/1.1\r\nHost: x\r\nX-Filler: {'b' * 65536}\r\n\r\n"
BAD_CHUNK = "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nc\r\n\r\n"


@pytest.mark.parametrize(
    ("request_text", "code", "echo"),
    [(LONG_SELECTOR, 431, "aaaaaaaa"), (HUGE_HEADER, 431, "bbbbbbbb"), (BAD_CHUNK, 400, "zz")],
    ids=["selector-over-the-line-limit", "64-KB-header", "bad-chunk-size"],
)
def test_malformed_request_is_a_status_and_one_warning(
    server: Server,
    pki: PKI,
    caplog: pytest.LogCaptureFixture,
    request_text: str,
    code: int,
    echo: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    status, headers, body = exchange(server.port, pki.path("serving-ca"), request_text.encode())
    assert status == code
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["kind"] == "Status"
    assert answer["apiVersion"] == "v1"
    assert answer["status"] == "Failure"
    assert answer["reason"] == "BadRequest"
    assert answer["code"] == code
    assert echo not in answer["message"]
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in loud] == ["WARNING"], [r.getMessage() for r in loud]
    (warning,) = loud
    assert warning.exc_info is None
    assert echo not in warning.getMessage()
    assert len(warning.getMessage()) < 300
    assert server.instrumentation.malformed_requests.labels(str(code))._value.get() == 1


# Connections: cap, header timeout, idle timeout.


def test_connections_over_the_cap_are_closed_before_the_tls_handshake(
    bounded: Callable[..., Server], pki: PKI
) -> None:
    server = bounded(max_connections=3)
    ca = pki.path("serving-ca")
    held = [tls_connection(server.port, ca) for _ in range(3)]
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connection(server.port, ca).close()
        assert server.instrumentation.connections_refused._value.get() == 1
        held.pop().close()
        deadline = time.monotonic() + 10
        while server.listener is not None and server.listener.open_connections() > 2:
            assert time.monotonic() < deadline, "a closed connection still counts"
            time.sleep(0.05)
        tls_connection(server.port, ca).close()  # a free place is taken again
    finally:
        for sock in held:
            sock.close()


def test_slow_and_silent_clients_are_cut_at_the_header_timeout(
    bounded: Callable[..., Server], pki: PKI
) -> None:
    server = bounded(request_header_timeout=0.5)
    ca = pki.path("serving-ca")
    with tls_connection(server.port, ca) as silent, tls_connection(server.port, ca) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert closed_by_server(silent, within=10)
        assert closed_by_server(slow, within=10)
    timeouts = server.instrumentation.connection_timeouts.labels("request-header")
    assert timeouts._value.get() == 2


def test_a_prompt_client_is_answered_and_then_closed_when_idle(
    bounded: Callable[..., Server], pki: PKI
) -> None:
    server = bounded(request_header_timeout=0.5, idle_connection_timeout=1.5)
    with tls_connection(server.port, pki.path("serving-ca")) as sock:
        time.sleep(0.2)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        # Kept open past the header timeout (the answer was given), closed when idle.
        assert not closed_by_server(sock, within=1.0)
        assert closed_by_server(sock, within=10)


# Memory, with the real command.


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def open_files_for_5000_connections() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 12000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for 5,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 12000), hard))  # inherited
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("open_files_for_5000_connections")
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_5000_idle_connections_stay_within_the_memory_request(tmp_path: Path) -> None:
    """5,000 idle TLS connections against `local` with the default cap: RSS stays under the
    Deployment's 600Mi request, and the server closes the idle ones after its timeouts."""
    timeout = 45  # long enough to open them all on a loaded machine, short for a test
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apiservice",
            "local",
            "--state-dir",
            str(tmp_path / "state"),
            "--secure-port",
            str(port),
            f"--request-header-timeout={timeout}s",
            f"--idle-connection-timeout={timeout}s",
            "--shutdown-timeout=5s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    connections: list[ssl.SSLSocket] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Stop it with Ctrl-C" in line:
                break
        ca = tmp_path / "state" / "ca.crt"
        base = peak = rss(process.pid)
        refused = 0
        started = time.monotonic()
        for attempt in range(5000):
            try:
                connections.append(tls_connection(port, ca))
            except (ssl.SSLError, ConnectionError):
                refused += 1
            if attempt % 250 == 0:
                peak = max(peak, rss(process.pid))
        opened = time.monotonic() - started
        peak = max(peak, rss(process.pid))
        print(
            f"\nRSS {base / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB at most with "
            f"{len(connections)} connections open and {refused} refused "
            f"(opened in {opened:.1f} s)"
        )
        for sock in connections[:10]:  # some serve a request first, then idle
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert peak < deployment_memory_request()
        assert len(connections) == 1024  # the default --max-connections
        assert refused == 5000 - 1024
        assert opened < timeout, "too slow to open them within the timeout; nothing was shown"
        assert not closed_by_server(connections[-1], within=0.1)  # kept until the timeout
        deadline = time.monotonic() + timeout + 30
        for sock in connections:
            assert closed_by_server(sock, within=max(0.1, deadline - time.monotonic()))
            sock.close()  # as a client does when the server closes
        time.sleep(3)  # the memory of a burst of closes is returned after a second
        after = rss(process.pid)
        print(f"RSS {after / 2**20:.0f} MiB after they were closed")
        # Most of it is returned (allowing 10 MiB for whatever else the server did meanwhile).
        assert after - base < (peak - base) / 2 + 10 * 2**20
    finally:
        for sock in connections:
            sock.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_each_connection_bound_is_a_flag_with_a_safe_default() -> None:
    from apiservice.__main__ import _parser

    defaults = _parser().parse_args(["serve"])
    assert defaults.max_connections == 1024
    assert defaults.tls_handshake_timeout == 10
    assert defaults.request_header_timeout == 10
    assert defaults.idle_connection_timeout == 90
    assert defaults.shutdown_timeout == 20
    bad = dataclasses.replace(
        Settings().serving, max_connections=0, request_header_timeout=0, shutdown_timeout=-1
    )
    problems = " ".join(bad.problems())
    for flag in ("--max-connections", "--request-header-timeout", "--shutdown-timeout"):
        assert flag in problems
