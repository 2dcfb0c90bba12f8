"""Authorization: may this user do what this request asks? Answered by the Kubernetes API.

As in kube-apiserver's delegating authorizer: members of an always-allowed group (by default
system:masters, which is what the aggregator's availability checks run as) skip the review;
everyone else's request becomes a SubjectAccessReview, whose answer is cached for a few
seconds, allowed and denied alike. A metric read is a resource request (verb ``list`` on
resource ``<metric>`` of group external.metrics.k8s.io in the namespace); any other path is a
non-resource request for that path. Without a Kubernetes API nobody outside the always-allowed
groups is authorized.

Paths that need neither authentication nor authorization (health probes) are decided by the
caller with `Authorizer.always_allows_path`, before authentication.
"""

from __future__ import annotations

import asyncio
import logging

import cachetools
from aiohttp import web

import adapter
from apiservice.errors import KubeAPIError, StatusError
from apiservice.identity import Attributes, User
from apiservice.instrumentation import Instrumentation
from apiservice.kube import AccessDecision, KubeAPI
from apiservice.settings import AuthorizationSettings

logger = logging.getLogger(__name__)

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
METRIC_ROUTE = "metric-values"
"""Name of the route whose requests are resource requests."""
TARGET_ROUTE = "target-prediction"
"""KEDA's metrics-api route: reading a target's predictions is `get` on predicted_replicas."""

_Key = tuple[tuple[object, ...], Attributes]


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
        self._allowed: cachetools.TTLCache[_Key, AccessDecision]
        self._allowed = cachetools.TTLCache(maxsize=10_000, ttl=settings.authorized_ttl)
        self._denied: cachetools.TTLCache[_Key, AccessDecision]
        self._denied = cachetools.TTLCache(maxsize=10_000, ttl=settings.unauthorized_ttl)
        self._in_flight: dict[_Key, asyncio.Task[AccessDecision]] = {}

    def always_allows_path(self, path: str) -> bool:
        return path in self._exact_paths or path.startswith(self._path_prefixes)

    async def authorize(self, user: User, attributes: Attributes) -> None:
        """Return if allowed; raise a 403 (denied) or 500 (review failed) `StatusError`."""
        if self._groups.intersection(user.groups):
            self._metrics.authorizations.labels("allowed", "always-allow").inc()
            return
        if self._kube is None:
            self._metrics.authorizations.labels("denied", "no-authorizer").inc()
            raise _forbidden(user, attributes, "no Kubernetes API is configured to authorize")
        key: _Key = (user.key(), attributes)
        decision = self._allowed.get(key) or self._denied.get(key)
        source = "cache"
        if decision is None:
            source = "review"
            decision = await self._review_once(key, user, attributes)
        self._metrics.authorizations.labels(
            "allowed" if decision.allowed else "denied", source
        ).inc()
        if not decision.allowed:
            raise _forbidden(user, attributes, decision.reason)

    async def _review_once(self, key: _Key, user: User, attributes: Attributes) -> AccessDecision:
        review = self._in_flight.get(key)
        if review is None:
            review = asyncio.create_task(self._review(key, user, attributes))
            self._in_flight[key] = review
            review.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(review)

    async def _review(self, key: _Key, user: User, attributes: Attributes) -> AccessDecision:
        assert self._kube is not None
        try:
            decision = await self._kube.review_access(user, attributes)
        except KubeAPIError as exc:
            self._metrics.authorizations.labels("error", "review").inc()
            logger.error("authorization of %s failed: %s", user.name, exc)
            raise StatusError(
                500, "Internal error occurred: the authorization check failed"
            ) from exc
        (self._allowed if decision.allowed else self._denied)[key] = decision
        return decision


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
