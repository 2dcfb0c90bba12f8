"""A real Prometheus with backfilled history, for tests and benchmarks.

- `ensure_prometheus()`: the `prometheus` and `promtool` binaries (Debian's package, installed
  on first use without letting the package start its own service on :9090).
- `write_openmetrics()` / `write_openmetrics_split()`: OpenMetrics text for promtool's
  backfill, fast enough for 1,000+ series over 14 days at 1 minute (numpy, batched joins).
- `PrometheusServer`: backfills an empty data dir once, then runs Prometheus on
  127.0.0.1:<free port> until `stop()`; `restart()` keeps port and data (outages in tests).
- `seed_workload()`: the project's seed scenario (nginx StatefulSet behind ingress
  `nginx-server`) as a deterministic generator whose true parameters and true future are known.

What it must not do: import pytest (benchmarks import it too), listen anywhere but loopback,
use port 9090, or leave a process behind: every process is stopped by its PID, and a server's
process is also told by the kernel to stop if the Python process that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, TextIO

import numpy as np
import numpy.typing as npt

from adapter import parse_duration

Kind = Literal["counter", "gauge"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Series = tuple[str, Kind, Mapping[str, str], npt.NDArray[np.integer], npt.NDArray[np.floating]]
"""(family, kind, labels, timestamps in seconds, values): one series of `write_openmetrics`."""

MAX_POINTS = 11_000
"""Prometheus answers a range query only if (end - start) / step <= this (11,001 points per
series, both ends included); beyond, HTTP 400 "exceeded maximum resolution": chunk."""
BLOCK_SECONDS = 18 * 3600
"""The block span promtool really uses for ``--max-block-duration=24h`` (it rounds down to
the compaction ranges 2h, 6h, 18h, 54h, ...); blocks are aligned to multiples of it."""
RESERVED_PORT = 9090  # Debian's packaged service: never ours.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_PACKAGED_PIDFILE = Path("/run/prometheus/prometheus.pid")
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

# --- binaries -----------------------------------------------------------------------------


def ensure_prometheus() -> tuple[str, str]:
    """Paths of `prometheus` and `promtool`, installing Debian's package if one is missing.

    The package's maintainer script starts a service on :9090 where an init system lets it:
    the install runs under a `policy-rc.d` that denies it (if the machine has none), and any
    packaged service that runs anyway is stopped and disabled afterwards.
    """
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] is not None and found[1] is not None:
        return found[0], found[1]
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(
            "prometheus/promtool are not on PATH and cannot be installed here (needs root and "
            "apt-get): run `apt-get install -y --no-install-recommends prometheus`"
        )
    with _services_denied():
        done = _apt("install", "-y", "--no-install-recommends", "prometheus")
        if done.returncode != 0:
            _apt("update")
            done = _apt("install", "-y", "--no-install-recommends", "prometheus")
    stop_packaged_service()
    found = shutil.which("prometheus"), shutil.which("promtool")
    if done.returncode != 0 or found[0] is None or found[1] is None:
        raise RuntimeError(
            "installing Debian's prometheus package failed "
            f"(apt-get exit {done.returncode}):\n{done.stdout[-3000:]}"
        )
    return found[0], found[1]


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        check=False,
    )


@contextlib.contextmanager
def _services_denied() -> Iterator[None]:
    """Deny service starts by maintainer scripts (invoke-rc.d, deb-systemd-invoke) meanwhile."""
    if _POLICY_RC_D.exists():
        yield
        return
    _POLICY_RC_D.write_text(
        "#!/bin/sh\n# temporary: no service starts during an install\nexit 101\n"
    )
    _POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC_D.unlink(missing_ok=True)


def stop_packaged_service() -> None:
    """Stop and disable the service Debian's package may have started (it listens on :9090).

    Without systemd as PID 1 (containers), the package's SysV script would run it with a pid
    file; with systemd, it is a unit. Either way it is stopped and kept from starting at boot.
    """
    if shutil.which("systemctl") is not None:
        if Path("/run/systemd/system").is_dir():
            _quiet(["systemctl", "stop", "prometheus.service"])
        _quiet(["systemctl", "disable", "prometheus.service"])  # works offline too
    if shutil.which("update-rc.d") is not None and Path("/etc/init.d/prometheus").exists():
        _quiet(["update-rc.d", "prometheus", "disable"])
    try:
        pid = int(_PACKAGED_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        if os.readlink(f"/proc/{pid}/exe").endswith("/prometheus"):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def _quiet(command: list[str]) -> None:
    subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        check=False,
    )


# --- OpenMetrics --------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def write_openmetrics(path: Path, series: Iterable[Series], *, decimals: int = 6) -> int:
    """Write `series` as one OpenMetrics file for `promtool tsdb create-blocks-from`.

    Each family gets one ``# TYPE`` line (counter families are named without ``_total``, their
    samples with it), its series follow contiguously, each series in time order, timestamps
    in seconds, and ``# EOF`` ends the file. Values are rounded to `decimals` decimal places
    and written as integers with an exponent (``123456e-3``, valid OpenMetrics) because
    formatting integers is 3-4 times faster than formatting floats. The series are held in
    memory until written (families must be contiguous). Returns the number of samples.
    """
    return _write(series, lambda _window: path, window=None, decimals=decimals)[1]


def write_openmetrics_split(
    directory: Path, series: Iterable[Series], *, window: int = BLOCK_SECONDS, decimals: int = 6
) -> list[Path]:
    """Like `write_openmetrics`, but one file per promtool block (``<start>.om`` each).

    promtool re-parses its whole input for every block it writes, so a 14-day file costs
    about 20 parses; one file per block window costs two, and the files backfill in parallel.
    `PrometheusServer` takes the list (or the directory). Returns the files, oldest first.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = _write(
        series, lambda start: directory / f"{start}.om", window=window, decimals=decimals
    )[0]
    return sorted(paths, key=lambda p: int(p.stem))


def _write(
    series: Iterable[Series],
    path_for: Callable[[int], Path],
    *,
    window: int | None,
    decimals: int,
) -> tuple[list[Path], int]:
    families: dict[str, tuple[Kind, list[tuple[str, IntArray, FloatArray]]]] = {}
    for family, kind, labels, timestamps, values in series:
        ts, vs = _checked(family, kind, timestamps, values)
        entry = families.setdefault(family, (kind, []))
        if entry[0] != kind:
            raise ValueError(f"family {family} is both {entry[0]} and {kind}")
        name = f"{family}_total" if kind == "counter" else family
        entry[1].append((f"{name}{_labels(labels)} ", ts, vs))

    files: dict[int, TextIO] = {}
    current: dict[int, str] = {}  # the family each file is in
    tails = _Tails()
    samples = 0
    try:
        for family, (kind, members) in families.items():
            for prefix, ts, vs in members:
                samples += len(ts)
                if window is None:
                    cuts = [(0, 0, len(ts))]
                else:
                    first, last = int(ts[0]) // window, int(ts[-1]) // window
                    edges = np.searchsorted(ts, np.arange(first, last + 2) * window)
                    cuts = [
                        ((first + i) * window, int(a), int(b))
                        for i, (a, b) in enumerate(itertools.pairwise(edges.tolist()))
                        if b > a
                    ]
                for key, a, b in cuts:
                    out = files.get(key)
                    if out is None:
                        out = files[key] = path_for(key).open("w", encoding="ascii")
                    if current.get(key) != family:
                        out.write(f"# TYPE {family} {kind}\n")
                        current[key] = family
                    strings, suffix = _format_values(vs[a:b], decimals)
                    out.write(
                        "".join(
                            itertools.chain.from_iterable(
                                zip(itertools.repeat(prefix), strings, tails.get(ts, a, b, suffix))
                            )
                        )
                    )
        for out in files.values():
            out.write("# EOF\n")
    finally:
        for out in files.values():
            out.close()
    return [path_for(key) for key in files], samples


def _checked(
    family: str, kind: str, timestamps: npt.NDArray[np.integer], values: npt.NDArray[np.floating]
) -> tuple[IntArray, FloatArray]:
    if kind not in ("counter", "gauge"):
        raise ValueError(f"{family}: kind must be counter or gauge, not {kind!r}")
    if not _NAME.fullmatch(family):
        raise ValueError(f"invalid metric family name {family!r}")
    if kind == "counter" and family.endswith("_total"):
        raise ValueError(f"counter family {family!r}: name the family without _total")
    ts, vs = np.asarray(timestamps), np.asarray(values, dtype=np.float64)
    if ts.ndim != 1 or ts.shape != vs.shape or len(ts) == 0:
        raise ValueError(f"{family}: timestamps and values must be equal-length, non-empty 1-D")
    if not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"{family}: timestamps must be integer seconds")
    ts = ts.astype(np.int64, copy=False)
    if np.any(np.diff(ts) <= 0):
        raise ValueError(f"{family}: timestamps must increase (promtool drops the others)")
    if ts[-1] > 10**11:
        raise ValueError(f"{family}: timestamps look like milliseconds; use seconds")
    if kind == "counter" and np.any(vs < 0):
        raise ValueError(f"{family}: counter values must not be negative")
    return ts, vs


def _labels(labels: Mapping[str, str]) -> str:
    parts = []
    for name, value in labels.items():
        if not _LABEL.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{name}="{escaped}"')
    return "{" + ",".join(parts) + "}" if parts else ""


def _format_values(values: FloatArray, decimals: int) -> tuple[list[str], str]:
    """Decimal strings of `values` and the exponent suffix they share ("" or "e-N")."""
    scale = 10.0**decimals
    if np.all(np.isfinite(values)) and float(np.max(np.abs(values))) * scale < 2.0**53:
        ints = np.rint(values * scale).astype(np.int64)
        for shown in range(decimals + 1):  # the fewest decimals that keep every value exact
            divisor = 10 ** (decimals - shown)
            if not np.any(ints % divisor):
                ints //= divisor
                return list(map(str, ints.tolist())), f"e-{shown}" if shown else ""
    # Rare: NaN, infinities or huge values; slower, exact.
    special = {math.inf: "+Inf", -math.inf: "-Inf"}
    return [
        "NaN" if math.isnan(v) else special.get(v) or repr(round(v, decimals))
        for v in values.tolist()
    ], ""


class _Tails:
    """``"<suffix> <timestamp>\\n"`` strings, cached per suffix for the last timestamps seen
    (the series of a generator share their timestamps)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[IntArray, list[str]]] = {}

    def get(self, ts: IntArray, a: int, b: int, suffix: str) -> list[str]:
        cached = self._cache.get(suffix)
        if cached is None or not np.array_equal(cached[0], ts):
            cached = self._cache[suffix] = (ts, [f"{suffix} {t}\n" for t in ts.tolist()])
        return cached[1][a:b]


# --- the server ---------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never 9090."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != RESERVED_PORT:
            return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PrometheusServer:
    """Prometheus on 127.0.0.1, with history backfilled from OpenMetrics.

    `openmetrics` is a file, a directory of ``*.om`` files, a list of files, or None (the data
    dir already holds blocks, e.g. kept from an earlier run). The first `start()` backfills
    into `data_dir`, which must then be empty; later starts (`restart()`) reuse the port and
    the data. The process logs to ``prometheus.log`` in the data dir; it has no scrape job,
    so what queries see is exactly the backfilled history. `retention` must exceed the span
    of the blocks (checked), or Prometheus deletes the oldest at startup.

    About a minute after a start, Prometheus compacts the backfilled 18-hour blocks into
    54-hour ones (14 days x 3,000 series at 1 minute: ~1 s of CPU, and the next query is cold,
    ~0.35 s): a benchmark that times queries waits for the block count in `data_dir` to drop.
    Start a server from a thread that outlives it (the main thread): the kernel stops it when
    the starting thread exits.
    """

    def __init__(
        self,
        data_dir: Path,
        openmetrics: Path | Sequence[Path] | None = None,
        retention: str = "60d",
    ) -> None:
        self.data_dir = data_dir
        self.openmetrics = openmetrics
        self.retention = retention
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.backfill_seconds: float | None = None  # measured by the first start
        self.ready_seconds: float | None = None  # start-to-ready of the last start
        self._prepared = False
        self._log: TextIO | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server was never started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prometheus.log"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError(f"Prometheus is already running (pid {self.process.pid})")
        prometheus, _ = ensure_prometheus()
        if not self._prepared:
            self._prepare()
        if self.port is None:
            self.port = free_port()
        config = self.data_dir / "prometheus.yml"
        self._log = self.log_path.open("a", encoding="utf-8")
        self._log.write(f"--- start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        self._log.flush()
        began = time.monotonic()
        self.process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # no leftover process if the caller dies
        )
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the process by its PID and wait (killed after 10 s). Idempotent."""
        process, self.process = self.process, None
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def restart(self) -> None:
        """Stop, then start again on the same port with the same data (no backfill)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        history = self.openmetrics
        if history is not None:
            if isinstance(history, Path):
                inputs = sorted(history.glob("*.om")) if history.is_dir() else [history]
            else:
                inputs = list(history)
            if not inputs:
                raise ValueError(f"no OpenMetrics input in {history}")
            if any(self.data_dir.iterdir()):
                raise ValueError(f"backfill needs an empty data dir; {self.data_dir} is not")
            began = time.monotonic()
            _backfill(inputs, self.data_dir)
            self.backfill_seconds = time.monotonic() - began
        span = _blocks_span_seconds(self.data_dir)
        if span >= parse_duration(self.retention):
            raise ValueError(
                f"retention {self.retention} does not cover the {span / 86400:.1f} days of "
                "history: Prometheus would delete blocks at startup"
            )
        (self.data_dir / "prometheus.yml").write_text(
            "# Written by tests/prometheus_harness.py: no scrape job, only backfilled history.\n"
            "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n"
        )
        self._prepared = True

    def _wait_ready(self, began: float) -> None:
        assert self.process is not None
        ready = f"{self.url}/-/ready"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Prometheus exited with {self.process.returncode} before it was ready; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(ready, timeout=1) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        self.ready_seconds = time.monotonic() - began
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - began > READY_TIMEOUT:
                raise RuntimeError(
                    f"Prometheus was not ready at {ready} within {READY_TIMEOUT:.0f} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)


def _backfill(inputs: list[Path], data_dir: Path) -> None:
    """promtool each input into `data_dir`, two at a time (one per core on these machines)."""
    _, promtool = ensure_prometheus()

    def one(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
                str(path),
                str(data_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=max(1, min(len(inputs), os.cpu_count() or 1))) as pool:
        for path, done in zip(inputs, pool.map(one, inputs), strict=True):
            if done.returncode != 0:
                raise RuntimeError(
                    f"promtool could not backfill {path} (exit {done.returncode}):\n"
                    f"{done.stdout[-3000:]}"
                )


def _blocks_span_seconds(data_dir: Path) -> float:
    """Seconds from the oldest to the newest sample of the blocks in `data_dir`."""
    lows, highs = [], []
    for meta in data_dir.glob("*/meta.json"):
        content = json.loads(meta.read_text())
        lows.append(int(content["minTime"]))
        highs.append(int(content["maxTime"]))
    return (max(highs) - min(lows)) / 1000 if lows else 0.0


# --- the seed workload --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class SeedWorkload:
    """The seed scenario on a time grid, with its true parameters.

    An nginx StatefulSet behind ingress `nginx-server`, driven by a periodic client:

    - ``rate`` (req/s) = base_rps x daily cycle (0.15 at 03:00 UTC up to 1 at 15:00 UTC)
      x (1 + 0.2 x a 1-hour triangle wave) x (1 + 2 % noise);
    - ``replicas`` = an HPA-like policy: ceil(rate 3 minutes ago / capacity_per_pod),
      clamped to [1, 10], scaled down only after 5 minutes (the max over the last 5 minutes);
    - ``cpu`` (cores, total over pods) = (base_per_pod x replicas + cost_per_request x rate)
      x (1 + 3 % noise).

    Noise is drawn per sample from streams keyed by `seed`, in time order, so the same
    generator continued (`future()`) is exactly what a longer history would have held.

    `series()` gives the OpenMetrics input; `queries` the PromQL that recovers each signal.
    At an evaluation time ``timestamps[k]`` (k >= 3), Prometheus 2.x ``rate(...[3m])`` (three
    steps, `rate_window`) covers the samples k-3..k exactly (both ends are included), so it
    equals the mean of the signal over steps k-3..k-1: ``trailing_mean(rate, 3)[k]``, up to
    the request counter's rounding to whole requests. The replicas query equals ``replicas``.
    Past the last sample Prometheus repeats the last value for 5 minutes (lookback delta).
    """

    namespace: str
    ingress: str
    workload: str
    step: int
    seed: int
    base_rps: float
    capacity_per_pod: float
    base_per_pod: float
    cost_per_request: float
    origin: int  # the generator's first timestamp
    offset: int  # index of timestamps[0] on the generator's grid
    timestamps: IntArray
    rate: FloatArray
    replicas: IntArray
    cpu: FloatArray
    requests_total: FloatArray  # counter value at each timestamp (integral of rate, floored)
    cpu_seconds_total: FloatArray  # counter value at each timestamp (integral of cpu)

    @property
    def end(self) -> int:
        """The timestamp after the last sample (where `future()` starts)."""
        return int(self.timestamps[-1]) + self.step

    @property
    def rate_window(self) -> str:
        """Three steps as a PromQL range (``3m`` at the 1-minute step)."""
        return f"{3 * self.step // 60}m" if self.step % 20 == 0 else f"{3 * self.step}s"

    @property
    def queries(self) -> dict[str, str]:
        """PromQL for each signal: ``rate``, ``cpu`` and ``replicas`` (rate windows span three
        steps: ``[3m]`` at the 1-minute step)."""
        ns, window = self.namespace, self.rate_window
        return {
            "rate": (
                "sum(rate(nginx_ingress_controller_requests_total"
                f'{{namespace="{ns}",ingress="{self.ingress}"}}[{window}]))'
            ),
            "cpu": (
                "sum(rate(container_cpu_usage_seconds_total"
                f'{{namespace="{ns}",container="{self.workload}"}}[{window}]))'
            ),
            "replicas": (
                "sum(kube_statefulset_status_replicas_ready"
                f'{{namespace="{ns}",statefulset="{self.workload}"}})'
            ),
        }

    def series(self) -> list[Series]:
        """The three series to backfill, in the shape `write_openmetrics` takes."""
        ns, ts = self.namespace, self.timestamps
        return [
            (
                "nginx_ingress_controller_requests",
                "counter",
                {"namespace": ns, "ingress": self.ingress, "status": "200"},
                ts,
                self.requests_total,
            ),
            (
                "container_cpu_usage_seconds",
                "counter",
                {"namespace": ns, "pod": f"{self.workload}-0", "container": self.workload},
                ts,
                self.cpu_seconds_total,
            ),
            (
                "kube_statefulset_status_replicas_ready",
                "gauge",
                {"namespace": ns, "statefulset": self.workload},
                ts,
                self.replicas.astype(np.float64),
            ),
        ]

    def future(self, seconds: float) -> SeedWorkload:
        """The true continuation: the next `seconds` after `end`, counters continuing."""
        extra = int(seconds // self.step)
        if extra <= 0:
            raise ValueError("the future must hold at least one step")
        total = self.offset + len(self.timestamps) + extra
        return _with_signals(self, _generate(self, total), total - extra)


def trailing_mean(values: npt.NDArray[np.floating], width: int) -> FloatArray:
    """Mean of values[k-width:k] at each k (NaN for k < width): what ``rate(x[width*step])``
    gives for a counter whose per-step increase is values * step."""
    sums = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64))])
    out = np.full(len(values), np.nan)
    out[width:] = (sums[width:-1] - sums[: -1 - width]) / width
    return out


def seed_workload(
    start: int,
    days: float,
    step: int = 60,
    *,
    namespace: str = "default",
    ingress: str = "nginx-server",
    workload: str = "nginx",
    base_rps: float = 100.0,
    capacity_per_pod: float = 15.0,
    base_per_pod: float = 0.05,
    cost_per_request: float = 0.004,
    seed: int = 0,
) -> SeedWorkload:
    """`days` of the seed scenario from `start` (seconds, UTC) every `step` seconds."""
    if step <= 0 or 86400 % step:
        raise ValueError("step must divide a day")
    count = round(days * 86400 / step)
    if count <= 0:
        raise ValueError("days must hold at least one step")
    params = SeedWorkload(
        namespace=namespace,
        ingress=ingress,
        workload=workload,
        step=step,
        seed=seed,
        base_rps=base_rps,
        capacity_per_pod=capacity_per_pod,
        base_per_pod=base_per_pod,
        cost_per_request=cost_per_request,
        origin=int(start),
        offset=0,
        timestamps=np.zeros(0, np.int64),
        rate=np.zeros(0),
        replicas=np.zeros(0, np.int64),
        cpu=np.zeros(0),
        requests_total=np.zeros(0),
        cpu_seconds_total=np.zeros(0),
    )
    return _with_signals(params, _generate(params, count), 0)


class _Signals(NamedTuple):
    timestamps: IntArray
    rate: FloatArray
    replicas: IntArray
    cpu: FloatArray
    requests_total: FloatArray
    cpu_seconds_total: FloatArray


def _with_signals(p: SeedWorkload, s: _Signals, cut: int) -> SeedWorkload:
    return dataclasses.replace(
        p,
        offset=cut,
        timestamps=s.timestamps[cut:],
        rate=s.rate[cut:],
        replicas=s.replicas[cut:],
        cpu=s.cpu[cut:],
        requests_total=s.requests_total[cut:],
        cpu_seconds_total=s.cpu_seconds_total[cut:],
    )


def _generate(p: SeedWorkload, count: int) -> _Signals:
    """The first `count` samples of the generator; a prefix never depends on `count`."""
    step = p.step
    ts = p.origin + step * np.arange(count, dtype=np.int64)
    hours = (ts % 86400) / 3600.0
    daily = 0.15 + 0.85 * (0.5 + 0.5 * np.cos(2 * np.pi * (hours - 15.0) / 24.0))
    phase = (ts % 3600) / 3600.0
    triangle = 1.0 - 4.0 * np.abs(phase - 0.5)  # -1 on the hour, +1 at half past
    noise_rate = np.random.default_rng([p.seed, 1]).standard_normal(count)
    noise_cpu = np.random.default_rng([p.seed, 2]).standard_normal(count)
    rate = np.maximum(p.base_rps * daily * (1 + 0.2 * triangle) * (1 + 0.02 * noise_rate), 0.0)

    lag = max(1, round(180 / step))  # the HPA sees the rate of a few minutes ago
    seen = np.concatenate([np.full(lag, rate[0]), rate[:-lag]])[:count]
    desired = np.clip(np.ceil(seen / p.capacity_per_pod), 1, 10).astype(np.int64)
    hold = max(1, round(300 / step))  # scale-down stabilization window
    padded = np.concatenate([np.full(hold - 1, desired[0]), desired])
    replicas = np.lib.stride_tricks.sliding_window_view(padded, hold).max(axis=1)

    cpu = (p.base_per_pod * replicas + p.cost_per_request * rate) * (1 + 0.03 * noise_cpu)
    cpu = np.maximum(cpu, 0.0)
    requests_total = np.floor(np.concatenate([[0.0], np.cumsum(rate * step)[:-1]]))
    cpu_seconds_total = np.concatenate([[0.0], np.cumsum(cpu * step)[:-1]])
    return _Signals(ts, rate, replicas, cpu, requests_total, cpu_seconds_total)
