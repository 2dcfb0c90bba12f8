"""The aiohttp application: routes, and the middleware that wraps every request.

Middleware, outermost first:

1. *observe*: request count and latency by route template and code (for /metrics);
2. *drain*: tracks the request, so that shutdown answers it (`apiservice.drain`);
3. *status*: any exception below becomes a `metav1.Status` answer (`apiservice.status`);
4. *guard*: OpenAPI paths are served without authentication (the aggregator fetches them
   without groups; see `apiservice.openapi`); always-allowed paths (health) skip
   authentication; everything else is authenticated (401) and then authorized (403) before
   its handler runs, so an unknown path tells an anonymous caller nothing.

Unknown paths answer 404 and wrong methods 405, both as `Status`.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

import adapter
from apiservice import authz, handlers
from apiservice.authn import Authenticator
from apiservice.authz import Authorizer
from apiservice.drain import Drain
from apiservice.identity import User
from apiservice.instrumentation import Instrumentation
from apiservice.status import Handler, status_middleware

logger = logging.getLogger(__name__)

AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
AUTHORIZER = web.AppKey("authorizer", Authorizer)
USER = web.RequestKey("user", User)

METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"


def build_app(
    *,
    provider: adapter.ExternalMetricsProvider,
    predictions: adapter.TargetPredictions | None = None,
    authenticator: Authenticator,
    authorizer: Authorizer,
    instrumentation: Instrumentation,
    health: handlers.Health | None = None,
    drain: Drain | None = None,
) -> web.Application:
    drain = drain or Drain()
    app = web.Application(middlewares=[_observe, drain.middleware, status_middleware, _guard])
    app[handlers.PROVIDER] = provider
    app[handlers.INSTRUMENTATION] = instrumentation
    app[handlers.HEALTH] = health or handlers.Health()
    app[AUTHENTICATOR] = authenticator
    app[AUTHORIZER] = authorizer
    get = web.get
    app.add_routes(
        [
            get(METRIC_PATH, handlers.metric_values, name=authz.METRIC_ROUTE),
            get("/apis/external.metrics.k8s.io/v1beta1", handlers.resource_list),
            get("/apis/external.metrics.k8s.io", handlers.group),
            get("/apis", handlers.apis),
            get("/apis/", handlers.apis),
            get("/version", handlers.version),
            get("/healthz", handlers.ok),
            get("/readyz", handlers.ok),
            get("/livez", handlers.livez),
            get("/openapi/v2", handlers.openapi, name="openapi-v2"),
            get("/openapi/v3", handlers.openapi, name="openapi-v3"),
            get("/openapi/v3/{tail:.*}", handlers.openapi, name="openapi-v3-tail"),
            get("/metrics", handlers.prometheus_metrics),
        ]
    )
    if predictions is not None:
        app[handlers.PREDICTIONS] = predictions
        app.router.add_get(
            "/predictions/v1/namespaces/{namespace}/targets/{target}",
            handlers.target_prediction,
            name=authz.TARGET_ROUTE,
        )
    return app


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics = request.app[handlers.INSTRUMENTATION]
    metrics.requests.labels(route, request.method, str(response.status)).inc()
    metrics.latency.labels(route).observe(time.perf_counter() - started)
    return response


_UNGUARDED_ROUTES = frozenset({"openapi-v2", "openapi-v3", "openapi-v3-tail"})


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    authorizer = request.app[AUTHORIZER]
    if request.match_info.route.name in _UNGUARDED_ROUTES or authorizer.always_allows_path(
        request.path
    ):
        return await handler(request)
    user = await request.app[AUTHENTICATOR].authenticate(request)
    request[USER] = user
    await authorizer.authorize(user, authz.attributes_for(request))
    return await handler(request)


class AccessLogger(AbstractAccessLogger):
    """One DEBUG line per request (user, method, path, code, time); health probes omitted."""

    _QUIET = frozenset({"/healthz", "/readyz", "/livez"})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path in self._QUIET:
            return
        user = request.get(USER)
        self.logger.debug(
            "%s %s %s -> %d in %.1f ms",
            user.name if user else "-",
            request.method,
            request.path_qs,
            response.status,
            time * 1000,
        )
