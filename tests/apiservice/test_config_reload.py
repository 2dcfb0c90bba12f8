"""Config and values reloads on a running server: off the event loop, bounded, reported once.

A reload reads, parses and checks the file in a worker thread; the event loop's lag is sampled
(every 20 ms, on the server's own loop) while it runs. A rejected file keeps the values served
before, and each distinct problem is logged (and counted) once, not on every reload tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from apiservice.server import Server
from apiservice.settings import ProviderSettings
from tests.adapter.test_config import alias_bomb
from tests.fakes import FakeHistorySource
from tests.harness import Client, LoopThread, settings_for
from tests.pki import PKI
from tests.samples import WEB_TARGET

NOW = 1_790_000_000.0
RELOAD = 0.1  # seconds between reload ticks in these tests
MAX_LAG = 0.1  # the event loop answers within 100 ms during any reload
SERVED = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas"
KEEPING = "keeping the current configuration"

# Rules with a long label matcher: 20 MB of them are ~9,000 rules, parsed in a few seconds.
RULE = """- seriesQuery: '{{__name__=~"^app_{index}_requests.*",namespace!="",note="{note}"}}'
  resources: {{template: "<<.Resource>>"}}
  name: {{matches: "^app_{index}_(.*)$", as: "app_{index}_${{1}}_rate"}}
  metricsQuery: "sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[3m])) by (<<.GroupBy>>)"
"""


def large_config(size: int) -> str:
    """A valid config of at least `size` bytes: the web target and many discovery rules."""
    parts, total, index = [WEB_TARGET, "rules:\n"], len(WEB_TARGET) + 7, 0
    while total < size:
        rule = RULE.format(index=index, note="n" * 2000)
        parts.append(rule)
        total += len(rule)
        index += 1
    return "".join(parts)


class LoopLag:
    """How late the server's event loop wakes from 20 ms sleeps, sampled until `stop`."""

    def __init__(self, loop: LoopThread) -> None:
        self.samples: list[float] = []
        self._running = True
        self._done = asyncio.run_coroutine_threadsafe(self._sample(), loop.loop)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while self._running:
            began = loop.time()
            await asyncio.sleep(0.02)
            self.samples.append(loop.time() - began - 0.02)

    def stop(self) -> float:
        """The largest lag seen, in seconds."""
        self._running = False
        self._done.result(10)
        return max(self.samples)


def start(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    config_max_bytes: int | None = None,
) -> tuple[Server, Path]:
    """A server forecasting the web target from `WEB_TARGET`, once it serves it."""
    config = tmp_path / "config.yaml"
    config.write_text(WEB_TARGET)
    source = FakeHistorySource(
        signals={"web_requests": lambda t: 200 + 150 * np.sin(2 * np.pi * t / 86400)}, now=NOW
    )
    provider = ProviderSettings(config_file=config, refresh_interval=300, reload_interval=RELOAD)
    if config_max_bytes is not None:
        provider = dataclasses.replace(provider, config_max_bytes=config_max_bytes)
    settings = dataclasses.replace(
        settings_for(pki, None, tmp_path / "unused.yaml"), provider=provider
    )
    server = make_server(settings, source=source, clock=lambda: NOW)
    assert served(server, pki, wait=30) == 200
    return server, config


def replace(path: Path, text: str) -> None:
    """Give `path` new contents at once, as a ConfigMap volume does (no half-written file)."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    staged.replace(path)


def served(server: Server, pki: PKI, wait: float = 0) -> int:
    """The status of a predicted_replicas read (retried for up to `wait` seconds until 200)."""
    deadline = time.monotonic() + wait
    with Client(server.port, pki.path("serving-ca"), pki.admin) as client:
        while True:
            status = client.get(f"{SERVED}?labelSelector=target%3Dweb").status
            if status == 200 or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> float:
    """Seconds until `condition` held (polled every 20 ms); fails after `timeout`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"{what} did not happen in {timeout:g}s"
        time.sleep(0.02)
    return time.monotonic() - began


def failures(server: Server, source: str = "config") -> float:
    return float(server.instrumentation.reload_failures.labels(source)._value.get())


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and text in record.getMessage()
    ]


def test_a_20_mb_config_is_refused_by_its_size_without_stalling_the_loop(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, config = start(make_server, pki, tmp_path)
    lag = LoopLag(loop_thread)
    replace(config, large_config(20 * 1024 * 1024))
    wait_for(lambda: failures(server) == 1, "the refusal")
    worst = lag.stop()
    print(f"\nworst loop lag while refusing 20 MB: {worst * 1000:.0f} ms")
    assert worst < MAX_LAG
    (message,) = errors(caplog, KEEPING)
    assert "larger than the 4194304 accepted" in message
    assert len(message) < 1024
    assert served(server, pki) == 200


def test_a_20_mb_config_within_the_limit_is_parsed_off_the_event_loop(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server, config = start(make_server, pki, tmp_path, config_max_bytes=64 * 1024 * 1024)
    lag = LoopLag(loop_thread)
    replace(config, large_config(20 * 1024 * 1024))
    took = wait_for(
        lambda: any("configuration reloaded" in r.getMessage() for r in caplog.records),
        "adopting the large config",
        timeout=50,
    )
    worst = lag.stop()
    print(
        f"\n20 MB config adopted in {took:.1f}s; worst loop lag meanwhile "
        f"{worst * 1000:.0f} ms over {len(lag.samples)} samples"
    )
    assert worst < MAX_LAG
    assert failures(server) == 0
    assert served(server, pki) == 200


def test_an_alias_bomb_is_refused_with_a_short_message_without_stalling_the_loop(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, config = start(make_server, pki, tmp_path)
    lag = LoopLag(loop_thread)
    replace(config, alias_bomb())
    took = wait_for(lambda: failures(server) == 1, "the refusal")
    worst = lag.stop()
    print(f"\nalias bomb refused in {took:.2f}s; worst loop lag {worst * 1000:.0f} ms")
    assert worst < MAX_LAG
    (message,) = errors(caplog, KEEPING)
    assert "aliases stand for more than" in message
    assert len(message) < 1024
    assert served(server, pki) == 200


def test_an_empty_config_is_refused_and_the_last_good_one_keeps_serving(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, config = start(make_server, pki, tmp_path)
    replace(config, "# the targets are coming back soon\n")
    wait_for(lambda: failures(server) == 1, "the refusal")
    (message,) = errors(caplog, KEEPING)
    assert "the file is empty" in message
    assert server.refresher is not None
    loop_thread.run(server.refresher.refresh())  # a refresh after the refusal still serves
    assert served(server, pki) == 200


def test_a_config_path_that_is_a_directory_is_reported_once(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server, config = start(make_server, pki, tmp_path)
    config.unlink()
    config.mkdir()
    wait_for(lambda: failures(server) == 1, "the first report")
    time.sleep(10 * RELOAD)  # ten more reload ticks
    (message,) = errors(caplog, KEEPING)
    assert "is a directory" in message
    assert failures(server) == 1
    assert served(server, pki) == 200
    config.rmdir()
    replace(config, WEB_TARGET.replace("maxReplicas: 20", "maxReplicas: 12"))
    wait_for(
        lambda: any("configuration reloaded" in r.getMessage() for r in caplog.records),
        "adopting the file once it is back",
    )
    replace(config, "")  # a new problem is reported again, once
    wait_for(lambda: failures(server) == 2, "the report of the next problem")


def test_a_values_path_that_is_a_directory_is_reported_once(
    make_server: Callable[..., Server],
    pki: PKI,
    tmp_path: Path,
    values_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(pki, None, values_file)
    settings = dataclasses.replace(
        settings, provider=ProviderSettings(values_file=values_file, reload_interval=RELOAD)
    )
    server = make_server(settings)
    values_file.unlink()
    values_file.mkdir()
    wait_for(lambda: failures(server, "values-file") == 1, "the first report")
    time.sleep(10 * RELOAD)
    (message,) = errors(caplog, "keeping the current values")
    assert "is a directory" in message
    assert failures(server, "values-file") == 1
