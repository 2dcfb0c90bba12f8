"""Shutdown of the HTTP side: every request in flight gets an answer, within a deadline.

`Drain` knows the requests being handled: its middleware (placed by `apiservice.app` just
inside the metrics one, so that what it answers is counted) registers each. On shutdown,
`finish` closes idle connections at once and busy ones after their answer, waits for the
requests in flight, and at the deadline cancels those still running and answers each a 503
`Status` "the server is shutting down", with ``Retry-After``: the client (the HPA, through
the aggregator) retries on the other replica instead of failing on a dropped connection.

It does not stop the listener, nor anything outside the HTTP requests; `apiservice.server`
orders the shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from aiohttp import web

from apiservice.errors import StatusError
from apiservice.status import SHUTTING_DOWN, Handler, status_response

ANSWER_TIME = 1.0
"""Seconds allowed for the cancelled requests to write their 503 after the deadline."""


class Closable(Protocol):
    def finish(self) -> None:
        """Close now if idle, else once the answer being worked on is written."""


class Drain:
    def __init__(self) -> None:
        self._requests: set[asyncio.Task[object]] = set()
        self._cut: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._requests.add(task)
        self._idle.clear()
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if task not in self._cut:
                raise
            task.uncancel()
            return status_response(StatusError(503, SHUTTING_DOWN, headers={"Retry-After": "1"}))
        finally:
            self._requests.discard(task)
            self._cut.discard(task)
            if not self._requests:
                self._idle.set()

    async def finish(self, connections: Iterable[Closable], deadline: float) -> int:
        """Answer every request in flight by `deadline` (loop time); the number cut short."""
        # A request whose head has just arrived starts on the next turn of the loop: let it
        # register, so that it counts as in flight rather than its connection as idle.
        await asyncio.sleep(0)
        for connection in connections:
            connection.finish()
        try:
            async with asyncio.timeout_at(deadline):
                await self._idle.wait()
        except TimeoutError:
            pass
        late = set(self._requests)
        if not late:
            return 0
        self._cut |= late
        for task in late:
            task.cancel(SHUTTING_DOWN)
        await asyncio.wait(late, timeout=ANSWER_TIME)
        return len(late)
