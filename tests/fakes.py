"""A fake Kubernetes API for fast tests: TokenReview, SubjectAccessReview and the
authentication ConfigMap, served over TLS on loopback so that the official client talks to it
exactly as it talks to a real API server.

Data-driven: tests put tokens, allowed (subject, verb, target) triples and ConfigMap data in,
and read back the reviews the adapter asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


@dataclasses.dataclass
class FakeKube:
    tokens: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Bearer token -> TokenReview status.user."""

    allow: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)
    """(subject, verb, resource or path) triples; subject is a user or ``group:<name>``."""

    configmap: dict[str, str] | None = None
    access_reviews: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    token_reviews: int = 0
    configmap_reads: int = 0
    down: bool = False
    unavailable_answers: int = 0
    """Requests answered 503 because the API is `down`."""
    review_delay: float = 0.0
    """Seconds each TokenReview and SubjectAccessReview takes (a slow API server)."""
    reviews_hang: bool = False
    """Reviews get no answer while this is set (a hung API server); reset() releases them."""

    _transports: weakref.WeakSet[asyncio.Transport] = dataclasses.field(
        default_factory=weakref.WeakSet, repr=False
    )

    async def cut_connections(self) -> None:
        """Abort the connections still open after the server's cleanup: one whose answer to
        a released hung review is still being flushed to a client that left would otherwise
        outlive the event loop."""
        for transport in list(self._transports):
            transport.abort()

    def reset(self) -> None:
        self.tokens.clear()
        self.allow.clear()
        self.configmap = None
        self.access_reviews.clear()
        self.token_reviews = 0
        self.configmap_reads = 0
        self.down = False
        self.unavailable_answers = 0
        self.review_delay = 0.0
        self.reviews_hang = False

    def app(self) -> web.Application:
        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.transport is not None:
                self._transports.add(request.transport)
            return await handler(request)

        app = web.Application(middlewares=[track])
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        app.router.add_post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews", self._access_review
        )
        app.router.add_get(CONFIGMAP_PATH, self._configmap)
        return app

    def _unavailable(self) -> web.Response:
        self.unavailable_answers += 1
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503}, status=503
        )

    async def _slow(self) -> None:
        await asyncio.sleep(self.review_delay)
        while self.reviews_hang:  # noqa: ASYNC110 - set from the test's thread, not the loop
            await asyncio.sleep(0.05)

    async def _token_review(self, request: web.Request) -> web.Response:
        if self.down:
            return self._unavailable()
        self.token_reviews += 1
        review = await request.json()
        await self._slow()
        user = self.tokens.get(review["spec"]["token"])
        review["status"] = (
            {"authenticated": True, "user": user}
            if user
            else {"authenticated": False, "error": "invalid token"}
        )
        return web.json_response(review, status=201)

    async def _access_review(self, request: web.Request) -> web.Response:
        if self.down:
            return self._unavailable()
        review = await request.json()
        spec = review["spec"]
        self.access_reviews.append(spec)
        await self._slow()
        if "resourceAttributes" in spec:
            attributes = spec["resourceAttributes"]
            target = attributes["resource"]
        else:
            attributes = spec["nonResourceAttributes"]
            target = attributes["path"]
        subjects = [spec.get("user", "")] + [f"group:{g}" for g in spec.get("groups") or []]
        allowed = any((subject, attributes["verb"], target) in self.allow for subject in subjects)
        review["status"] = (
            {"allowed": allowed}
            if allowed
            else {"allowed": False, "reason": "no RBAC rule allows it"}
        )
        return web.json_response(review, status=201)

    async def _configmap(self, request: web.Request) -> web.Response:
        if self.down:
            return self._unavailable()
        self.configmap_reads += 1
        if self.configmap is None:
            return web.json_response(
                {"kind": "Status", "code": 404, "reason": "NotFound"}, status=404
            )
        return web.json_response(
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {
                    "name": "extension-apiserver-authentication",
                    "namespace": "kube-system",
                },
                "data": self.configmap,
            }
        )


@dataclasses.dataclass
class FakeProvider:
    """A provider that raises what it is told to (for the error paths of the API surface)."""

    error: Exception | None = None

    def list_metrics(self) -> list[Any]:
        from adapter import MetricInfo

        return [MetricInfo("predicted_replicas")]

    def get_values(self, namespace: str, metric: str, selector: Any) -> list[Any]:
        if self.error is not None:
            raise self.error
        return []  # an empty answer, unless told to raise


class Clock:
    """A settable clock: tests move `now`, code under test calls it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class FakeHistorySource:
    """A Prometheus stand-in: query -> function of timestamps; records every range asked for."""

    signals: dict[str, Any] = dataclasses.field(default_factory=dict)
    series: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    calls: list[tuple[str, int, int, int]] = dataclasses.field(default_factory=list)
    down: bool = False
    now: float = 0.0

    def query_range(self, query: str, start: int, end: int, step: int) -> list[Any]:
        import numpy as np

        from adapter.prometheus import QueryFailed, SourceUnavailable

        if self.down:
            raise SourceUnavailable("Prometheus at http://fake is unreachable: ConnectionError")
        if query not in self.signals:
            raise QueryFailed(f"unknown query {query!r}")
        self.calls.append((query, start, end, step))
        stamps = np.arange(start, min(end, int(self.now)) + 1, step, dtype=np.int64)
        return (
            [(stamps, np.asarray(self.signals[query](stamps), dtype=float))] if len(stamps) else []
        )

    def series_names(self, selector: str) -> list[str]:
        from adapter.prometheus import SourceUnavailable

        if self.down:
            raise SourceUnavailable("Prometheus at http://fake is unreachable: ConnectionError")
        return self.series.get(selector, [])
