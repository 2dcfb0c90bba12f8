"""Run real servers on a background event loop, and talk to them like outside clients do.

Tests stay synchronous: they run kubectl, the official Kubernetes client and plain
``http.client`` connections against a server that runs, as in production, on its own event
loop (in a thread here). A blocking call on that loop is caught by blockbuster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import ssl
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from apiservice.server import Server
from apiservice.settings import (
    AuthenticationSettings,
    KubernetesSettings,
    ProviderSettings,
    ServingSettings,
    Settings,
)
from tests.pki import FRONT_PROXY_NAME, PKI, Pair

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="server-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        # A TLS connection whose peer left without close_notify lingers for asyncio's 30 s
        # shutdown timeout after the server stopped; at the end of the session, cut them.
        def abort_leftovers() -> None:
            for transport in list(getattr(self.loop, "_transports", {}).values()):
                transport.abort()

        self.loop.call_soon_threadsafe(abort_leftovers)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


async def serve_app(app: web.Application, context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, int(runner.addresses[0][1])


def write_kubeconfig(path: Path, server: str, ca: Path, user: Mapping[str, str]) -> Path:
    """Write a kubeconfig (file-referencing) for `server`, trusted through `ca`, with `user`'s
    credentials (client certificate files or a token)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}
                ],
                "users": [{"name": "u", "user": dict(user)}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def kubeconfig_for(path: Path, server: str, ca: Path, client: Pair) -> Path:
    """A kubeconfig (file-referencing) for a client certificate."""
    return write_kubeconfig(
        path,
        server,
        ca,
        {"client-certificate": str(client.cert), "client-key": str(client.key)},
    )


@dataclasses.dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """An HTTPS client with an optional client certificate, keeping its connection alive."""

    def __init__(
        self, port: int, ca: Path, identity: Pair | None = None, server_name: str = "localhost"
    ) -> None:
        self.context = ssl.create_default_context(cafile=str(ca))
        if identity is not None:
            self.context.load_cert_chain(identity.cert, identity.key)
        self.port = port
        self.server_name = server_name
        self._connection: http.client.HTTPSConnection | None = None

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> Answer:
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(
                self.server_name, self.port, context=self.context, timeout=10
            )
        try:
            self._connection.request(method, path, headers=dict(headers or {}))
            response = self._connection.getresponse()
            body = response.read()
        except BaseException:
            self.close()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return Answer(response.status, response.headers, body)

    def raw_connection(self) -> http.client.HTTPSConnection:
        """A new connection, for requests that need repeated headers."""
        return http.client.HTTPSConnection(
            self.server_name, self.port, context=self.context, timeout=10
        )

    def peer_certificate(self) -> dict[str, Any]:
        assert self._connection is not None
        sock = self._connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        certificate = sock.getpeercert()
        assert certificate is not None
        return dict(certificate)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def start_server(loop: LoopThread, settings: Settings, **kwargs: Any) -> Server:
    """Build (off the loop, it reads files) and start a server on the loop thread."""
    server = Server(settings, **kwargs)
    loop.run(server.start())
    return server


def settings_for(
    pki: PKI, kubeconfig: Path | None, values_file: Path, **authentication: Any
) -> Settings:
    """Settings as a cluster would give them, with every CA from flags (no lookup)."""
    defaults: dict[str, Any] = {
        "client_ca_file": pki.path("client-ca"),
        "requestheader_client_ca_file": pki.path("front-proxy-ca"),
        "requestheader_allowed_names": (FRONT_PROXY_NAME,),
        "skip_lookup": True,
    }
    defaults.update(authentication)
    return Settings(
        serving=ServingSettings(
            bind_address="127.0.0.1",
            secure_port=0,
            tls_cert_file=pki.serving.cert,
            tls_private_key_file=pki.serving.key,
        ),
        authentication=AuthenticationSettings(**defaults),
        kubernetes=KubernetesSettings(kubeconfig=kubeconfig),
        provider=ProviderSettings(values_file=values_file),
    )
