"""The HTTPS listener: every connection bounded, from accept to close.

A connection passes three gates before its first request is handled, each with a bound:

1. *accept*: past ``--max-connections`` open ones, it is closed at once, before any TLS work,
   and counted as refused;
2. *TLS handshake*: it must finish within ``--tls-handshake-timeout`` (the closing handshake
   too), with a 16 KiB TLS read buffer where asyncio allocates 256 KiB per connection;
3. *request head*: the whole head must arrive within ``--request-header-timeout``, and a
   connection without a request is closed after ``--idle-connection-timeout``.

After a burst of closes the freed memory is handed back to the operating system
(``malloc_trim``), so that a flood leaves no lasting footprint.

`Connection` is aiohttp's request handler with those timers, with malformed requests (a
request line or header over the limit, a bad chunk size) answered as a `Status` and logged
as one WARNING line, and with the close that shutdown uses. It is the one place that knows
aiohttp's connection internals (pinned in constraints.txt). Nothing here reads settings
files, authenticates or routes: requests go on to the aiohttp application unchanged.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

from apiservice import status as statuses
from apiservice.errors import StatusError
from apiservice.instrumentation import Instrumentation
from apiservice.settings import ServingSettings

logger = logging.getLogger(__name__)

TLS_READ_BUFFER = 16 * 1024
"""Bytes read from a socket at once: one TLS record. asyncio's 256 KiB was most of the
276 KiB that an idle connection held; the requests served here are far below 16 KiB."""

BACKLOG = 1024
"""Connections the kernel queues before the listener accepts them."""

TRIM_AFTER_CLOSES = 64
"""Closes that make a burst worth returning memory for."""

TRIM_DELAY = 1.0
"""Seconds after the last close of a burst before memory is returned (once per burst)."""


class _TLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a small read buffer, reporting its end to the listener."""

    max_size = TLS_READ_BUFFER

    def __init__(self, listener: Listener, connection: Connection, context: ssl.SSLContext) -> None:
        timeout = listener.settings.tls_handshake_timeout
        super().__init__(
            listener.loop,
            connection,
            context,
            None,  # type: ignore[arg-type]  # no one awaits the handshake: None is accepted
            server_side=True,
            ssl_handshake_timeout=timeout,  # type: ignore[arg-type]  # seconds, float or int
            ssl_shutdown_timeout=timeout,
        )
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._listener.opened(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        transport = self._transport
        super().connection_lost(exc)
        self._listener.closed(transport)


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed on arrival, no TLS state ever made for it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class Listener:
    """Accepts connections for an aiohttp server (``web.AppRunner.server``), within bounds."""

    def __init__(
        self,
        server: web.Server,
        context: ssl.SSLContext,
        settings: ServingSettings,
        instrumentation: Instrumentation,
        **handler_options: Any,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.settings = settings
        self._server = server
        self._context = context
        self._instrumentation = instrumentation
        self._handler_options = handler_options
        self._transports: set[asyncio.BaseTransport] = set()
        self._pending = 0  # accepted, protocol made, transport not yet attached
        self._listening: asyncio.Server | None = None
        self._closes = 0
        self._trim: asyncio.TimerHandle | None = None
        self._trimming: asyncio.Task[None] | None = None
        self._release_memory = RELEASE_MEMORY
        instrumentation.connections.set_function(self.open_connections)

    @property
    def port(self) -> int:
        assert self._listening is not None
        return int(self._listening.sockets[0].getsockname()[1])

    def open_connections(self) -> int:
        return len(self._transports) + self._pending

    @property
    def connections(self) -> list[Connection]:
        """The connections past the TLS handshake, serving or waiting for a request."""
        return [c for c in self._server.connections if isinstance(c, Connection)]

    async def start(self) -> None:
        listening = await self.loop.create_server(
            self._accept,
            self.settings.bind_address,
            self.settings.secure_port,
            backlog=BACKLOG,
            reuse_address=True,
        )
        assert isinstance(listening, asyncio.Server)
        self._listening = listening

    def close(self) -> None:
        """Stop accepting; open connections are left to the caller (see `Connection.finish`)."""
        if self._listening is not None:
            self._listening.close()

    async def wait_closed(self) -> None:
        """Stop accepting, cut every connection still open (in the TLS handshake or the
        closing one, after the server's own shutdown), and wait until they are gone."""
        self.close()
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        if self._trimming is not None:
            await self._trimming
        if self._listening is not None:
            await self._listening.wait_closed()
        await asyncio.sleep(0)  # aborted transports report their loss on the next turn

    def _accept(self) -> asyncio.BaseProtocol:
        if self.open_connections() >= self.settings.max_connections:
            self._instrumentation.connections_refused.inc()
            return _Refused()
        self._pending += 1
        connection = Connection(
            self._server,
            loop=self.loop,
            header_timeout=self.settings.request_header_timeout,
            keepalive_timeout=self.settings.idle_connection_timeout,
            instrumentation=self._instrumentation,
            **self._handler_options,
        )
        return _TLS(self, connection, self._context)

    def opened(self, transport: asyncio.BaseTransport) -> None:
        self._pending -= 1
        self._transports.add(transport)

    def closed(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None:
            self._transports.discard(transport)
        self._closes += 1
        if self._closes >= TRIM_AFTER_CLOSES and self._release_memory is not None:
            if self._trim is not None:
                self._trim.cancel()  # wait for the burst to end
            self._trim = self.loop.call_later(TRIM_DELAY, self._start_trim)

    def _start_trim(self) -> None:
        self._trim = None
        if self._trimming is None or self._trimming.done():
            self._closes = 0
            self._trimming = self.loop.create_task(self._return_memory(), name="malloc-trim")

    async def _return_memory(self) -> None:
        assert self._release_memory is not None
        # A walk over the heap: in a worker thread (ctypes lets go of the GIL).
        await asyncio.to_thread(self._release_memory)


def _memory_release() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``: give free heap pages back to the system. None elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): freed memory stays mapped
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release


RELEASE_MEMORY = _memory_release()


class Connection(web_protocol.RequestHandler):
    """One HTTP connection after its TLS handshake: aiohttp's handler, bounded and quiet."""

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        header_timeout: float,
        instrumentation: Instrumentation,
        **options: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **options)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._instrumentation = instrumentation

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        requests = self._request_count
        super().data_received(data)
        if self._request_count != requests:
            self._disarm_header_timer()  # a head is complete (or malformed, and answered)
        elif data and self._header_timer is None:
            self._arm_header_timer()  # the first bytes of a head: it has a deadline now

    def finish(self) -> None:
        """For shutdown: close now if idle, else after the answer being worked on."""
        if self._request_in_progress or self._messages:
            self.close()
        else:
            self.force_close()

    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._request_in_progress or self._messages:
            return  # a request is being answered: the head that timed out was a body
        self._instrumentation.connection_timeouts.labels("request-header").inc()
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request the parser rejected, or an error no middleware rendered, as a `Status`.

        A rejected request is the client's fault: one WARNING line without traceback, and no
        part of the request quoted. Anything else is the server's: an error with traceback.
        """
        if isinstance(exc, HttpProcessingError):
            error = statuses.malformed_request(exc)
            self._instrumentation.malformed_requests.labels(str(error.code)).inc()
            logger.warning(
                "rejected a malformed request from %s: %s", request.remote, error.message
            )
        elif status == 504:
            error = StatusError(504, "Timeout: the request did not finish in time")
        else:
            logger.error("internal error while handling a request", exc_info=exc)
            error = StatusError(500, statuses.INTERNAL_ERROR)
        if request.writer.output_size > 0:  # an answer had begun: nothing more can be said
            raise ConnectionError("cannot answer an error after the response has started")
        response = statuses.status_response(error)
        response.force_close()
        return response
