"""Authorization: may this user do what this request asks? Answered by the Kubernetes API.

As in kube-apiserver's delegating authorizer: members of an always-allowed group (by default
system:masters, which is what the aggregator's availability checks run as) skip the review;
everyone else's request becomes a SubjectAccessReview, whose answer is cached for a few
seconds, allowed and denied alike. A metric read is a resource request (verb ``list`` on
resource ``<metric>`` of group external.metrics.k8s.io in the namespace); any other path is a
non-resource request for that path. Without a Kubernetes API nobody outside the always-allowed
groups is authorized.

An allowed decision in use is reviewed again before it expires, in the background, so a
steady client (the HPA) never waits for a review. A review that cannot be made is a 429 (too
many waiting) or a 503 (the API failed or missed the deadline; remembered for `ERROR_TTL`),
never a 500.

Paths that need neither authentication nor authorization (health probes) are decided by the
caller with `Authorizer.always_allows_path`, before authentication.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import cachetools
from aiohttp import web

import adapter
from apiservice.errors import KubeAPIError, StatusError
from apiservice.identity import Attributes, User
from apiservice.instrumentation import Instrumentation
from apiservice.kube import (
    ERROR_TTL,
    FAILED as _FAILED,
    REFUSED as _REFUSED,
    AccessDecision,
    KubeAPI,
    TroubleLog,
    unreviewed,
    was_refused,
)
from apiservice.settings import AuthorizationSettings

logger = logging.getLogger(__name__)

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
METRIC_ROUTE = "metric-values"
"""Name of the route whose requests are resource requests."""
TARGET_ROUTE = "target-prediction"
"""KEDA's metrics-api route: reading a target's predictions is `get` on predicted_replicas."""

_Key = tuple[tuple[object, ...], Attributes]

CACHE_SIZE = 10_000
"""Decisions remembered per kind (allowed, denied, failed)."""


def attributes_for(request: web.Request) -> Attributes:
    """The SubjectAccessReview attributes of a request."""
    match_info = request.match_info
    route = match_info.route.name
    if route in (METRIC_ROUTE, TARGET_ROUTE):  # GET-only routes (HEAD too); others never match
        metric_values = route == METRIC_ROUTE
        return Attributes(
            verb="list" if metric_values else "get",
            path=request.path,
            resource=match_info["metric"] if metric_values else adapter.REPLICAS,
            namespace=match_info["namespace"],
            group=GROUP,
            version=VERSION,
        )
    verb = "get" if request.method == "HEAD" else request.method.lower()
    return Attributes(verb=verb, path=request.path)


class Authorizer:
    def __init__(
        self,
        kube: KubeAPI | None,
        settings: AuthorizationSettings,
        *,
        instrumentation: Instrumentation,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._groups = frozenset(settings.always_allow_groups)
        self._exact_paths = frozenset(p for p in settings.always_allow_paths if not p.endswith("*"))
        self._path_prefixes = tuple(p[:-1] for p in settings.always_allow_paths if p.endswith("*"))
        self._metrics = instrumentation
        self._allowed: cachetools.TTLCache[_Key, _Allowed]
        self._allowed = cachetools.TTLCache(maxsize=CACHE_SIZE, ttl=settings.authorized_ttl)
        self._denied: cachetools.TTLCache[_Key, AccessDecision]
        self._denied = cachetools.TTLCache(maxsize=CACHE_SIZE, ttl=settings.unauthorized_ttl)
        self._failed: cachetools.TTLCache[_Key, str]
        self._failed = cachetools.TTLCache(maxsize=CACHE_SIZE, ttl=ERROR_TTL)
        self._in_flight: dict[_Key, asyncio.Task[AccessDecision | str]] = {}
        self._trouble = TroubleLog(logger, logging.ERROR)

    def always_allows_path(self, path: str) -> bool:
        return path in self._exact_paths or path.startswith(self._path_prefixes)

    async def authorize(self, user: User, attributes: Attributes) -> None:
        """Return if allowed; raise a 403 (denied), 429 (too many reviews waiting) or 503
        (the review failed) `StatusError`."""
        if self._groups.intersection(user.groups):
            self._metrics.authorizations.labels("allowed", "always-allow").inc()
            return
        if self._kube is None:
            self._metrics.authorizations.labels("denied", "no-authorizer").inc()
            raise _forbidden(user, attributes, "no Kubernetes API is configured to authorize")
        key: _Key = (user.key(), attributes)
        allowed = self._allowed.get(key)
        if allowed is not None:
            if time.monotonic() - allowed.reviewed_at >= self._settings.authorized_ttl / 2:
                _ = self._review_once(key, user, attributes)  # renewed ahead; no waiting
            self._metrics.authorizations.labels("allowed", "cache").inc()
            return
        decision: AccessDecision | str | None = self._denied.get(key) or self._failed.get(key)
        source = "cache"
        if decision is None:
            source = "review"
            decision = await asyncio.shield(self._review_once(key, user, attributes))
        if isinstance(decision, str):
            self._metrics.authorizations.labels("error", source).inc()
            raise unreviewed(
                decision,
                "the authorization check is waiting for the Kubernetes API",
                "the authorization check could not be made",
            )
        self._metrics.authorizations.labels(
            "allowed" if decision.allowed else "denied", source
        ).inc()
        if not decision.allowed:
            raise _forbidden(user, attributes, decision.reason)

    def _review_once(
        self, key: _Key, user: User, attributes: Attributes
    ) -> asyncio.Task[AccessDecision | str]:
        """One review per user and request at a time; concurrent requests share its answer."""
        review = self._in_flight.get(key)
        if review is None:
            review = asyncio.create_task(self._review(key, user, attributes))
            self._in_flight[key] = review
            review.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return review

    async def _review(self, key: _Key, user: User, attributes: Attributes) -> AccessDecision | str:
        """The decision, or why there is none (`_REFUSED`, `_FAILED`)."""
        assert self._kube is not None
        try:
            decision = await self._kube.review_access(
                user, attributes, deadline=self._settings.webhook_timeout
            )
        except KubeAPIError as exc:
            if was_refused(exc):
                self._trouble(_REFUSED, f"authorization answered 429: {exc}")
                return _REFUSED
            self._trouble(_FAILED, f"authorization of {user.name} failed: {exc}")
            self._failed[key] = _FAILED
            return _FAILED
        self._failed.pop(key, None)
        if decision.allowed:
            self._allowed[key] = _Allowed(decision, time.monotonic())
            self._denied.pop(key, None)
        else:
            self._denied[key] = decision
            self._allowed.pop(key, None)
        return decision


@dataclasses.dataclass(frozen=True, slots=True)
class _Allowed:
    decision: AccessDecision
    reviewed_at: float
    """`time.monotonic()` of the review."""


def _forbidden(user: User, attributes: Attributes, reason: str) -> StatusError:
    suffix = f": {reason}" if reason else ""
    if attributes.is_resource_request:
        message = (
            f'{attributes.resource}.{GROUP} is forbidden: User "{user.name}" cannot '
            f'{attributes.verb} resource "{attributes.resource}" in API group "{GROUP}" '
            f'in the namespace "{attributes.namespace}"{suffix}'
        )
        return StatusError(403, message, details={"group": GROUP, "kind": attributes.resource})
    message = (
        f'forbidden: User "{user.name}" cannot {attributes.verb} path "{attributes.path}"{suffix}'
    )
    return StatusError(403, message)
