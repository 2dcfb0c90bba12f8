"""Connection benchmark: the adapter's memory with many idle TLS connections open.

It starts `predictive-metrics-adapter local` as its own process (the forecaster loaded, as in
a pod), opens idle TLS connections in steps (completed handshakes, no request), and prints
the server's RSS at each step, how many connections the cap refused, the time to open them,
and the RSS once they are all closed again (after the release of freed memory).

    make bench-connections      # or: python -m bench.connections --connections 5000
"""

from __future__ import annotations

import argparse
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.prometheus_harness import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--step", type=int, default=500)
    parser.add_argument("--max-connections", type=int, help="the server's cap (its default)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * args.connections + 1000  # the client's ends and the server's
    if hard != resource.RLIM_INFINITY and hard < wanted:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} open files needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    with tempfile.TemporaryDirectory() as scratch:
        run(Path(scratch), args.connections, args.step, args.max_connections)


def run(directory: Path, total: int, step: int, cap: int | None) -> None:
    port = free_port()
    command = [sys.executable, "-m", "apiservice", "local", "--state-dir", str(directory)]
    command += ["--secure-port", str(port), "--request-header-timeout=10m"]
    command += ["--idle-connection-timeout=10m"]
    if cap is not None:
        command.append(f"--max-connections={cap}")
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=directory
    )
    assert server.stdout is not None
    open_connections: list[ssl.SSLSocket] = []
    try:
        for line in server.stdout:
            if "Stop it with Ctrl-C" in line:
                break
        context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        print(f"server RSS {rss(server.pid):.0f} MiB with no connection")
        print(
            f"{'attempted':>10} {'open':>6} {'refused':>8} {'RSS MiB':>8} {'KiB/open':>9} {'s':>6}"
        )
        base = rss(server.pid)
        refused = 0
        started = time.monotonic()
        for attempt in range(1, total + 1):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            try:
                open_connections.append(context.wrap_socket(sock, server_hostname="127.0.0.1"))
            except (ssl.SSLError, ConnectionError):
                sock.close()
                refused += 1
            if attempt % step == 0 or attempt == total:
                now = rss(server.pid)
                per = (now - base) * 1024 / max(1, len(open_connections))
                print(
                    f"{attempt:>10} {len(open_connections):>6} {refused:>8} {now:>8.0f} "
                    f"{per:>9.1f} {time.monotonic() - started:>6.1f}"
                )
        for sock in open_connections:
            sock.close()
        open_connections.clear()
        time.sleep(3)  # closes seen by the server, freed memory released a second later
        print(f"server RSS {rss(server.pid):.0f} MiB after all were closed")
    finally:
        for sock in open_connections:
            sock.close()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        server.stdout.close()


def rss(pid: int) -> float:
    """Resident memory of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


if __name__ == "__main__":
    main()
