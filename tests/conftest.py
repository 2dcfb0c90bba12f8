"""Shared fixtures: a PKI, a fake Kubernetes API, and servers on a background event loop.

Guards for every test: warnings are errors (pyproject), and blockbuster fails any blocking
call made on a running event loop, which is how the server's loop thread is kept honest.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import blockbuster_ctx

from apiservice.server import Server
from apiservice.settings import Settings
from tests.fakes import FakeKube
from tests.harness import LoopThread, kubeconfig_for, serve_app, settings_for, start_server
from tests.pki import PKI

VALUES = """
values:
  - metric: predicted_replicas
    namespace: shop
    labels: {target: web, tier: api}
    value: 7
    window: 600
  - metric: predicted_replicas
    namespace: shop
    labels: {target: worker}
    value: 2.5
  - metric: predicted_requests_rate
    namespace: shop
    labels: {target: web}
    value: 1234.5678
"""


@pytest.fixture(autouse=True)
def _no_blocking_on_event_loops() -> Iterator[None]:
    with blockbuster_ctx() as blockbuster:
        # Module imports read files; they happen once, at first use, wherever that is.
        for name in ("io.BufferedReader.read", "os.stat", "os.listdir", "io.FileIO.read"):
            if name in blockbuster.functions:
                blockbuster.functions[name].can_block_in(
                    "importlib/_bootstrap_external.py", "get_data"
                )
        yield


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def _fake_kube_server(
    loop_thread: LoopThread, pki: PKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FakeKube, Path]]:
    fake = FakeKube()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.serving.cert, pki.serving.key)
    runner, port = loop_thread.run(serve_app(fake.app(), context))
    config = kubeconfig_for(
        tmp_path_factory.mktemp("kube") / "kubeconfig",
        f"https://localhost:{port}",
        pki.path("serving-ca"),
        pki.admin,
    )
    yield fake, config
    fake.reset()  # releases hung reviews
    loop_thread.run(runner.cleanup())
    loop_thread.run(fake.cut_connections())


@pytest.fixture
def fake_kube(_fake_kube_server: tuple[FakeKube, Path]) -> Iterator[FakeKube]:
    fake, _ = _fake_kube_server
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture
def kubeconfig(_fake_kube_server: tuple[FakeKube, Path]) -> Path:
    return _fake_kube_server[1]


@pytest.fixture
def values_file(tmp_path: Path) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(VALUES)
    return path


@pytest.fixture
def make_server(loop_thread: LoopThread) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(settings: Settings, **kwargs: Any) -> Server:
        server = start_server(loop_thread, settings.validate(), **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        loop_thread.run(server.stop())


@pytest.fixture
def server(
    make_server: Callable[..., Server],
    pki: PKI,
    kubeconfig: Path,
    values_file: Path,
    fake_kube: FakeKube,
) -> Server:
    """A server as deployed: front proxy and client CAs from flags, reviews by the fake API."""
    return make_server(settings_for(pki, kubeconfig, values_file))
