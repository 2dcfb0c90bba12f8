"""Request handlers: the metric endpoint, discovery, version, health, OpenAPI and /metrics.

Handlers read the provider and the app's state; they never call Prometheus, the model or the
Kubernetes API. Authentication and authorization have already happened (see `apiservice.app`)
by the time a handler runs; errors are raised and rendered by `apiservice.status`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import platform
from collections.abc import Callable
from importlib import metadata
from typing import Any

from aiohttp import web

import adapter
from apiservice import discovery, openapi as openapi_documents
from apiservice.errors import StatusError
from apiservice.instrumentation import CONTENT_TYPE, Instrumentation
from apiservice.quantities import format_quantity
from apiservice.status import json_response


@dataclasses.dataclass
class Health:
    """Liveness checks: named callables that say what is wrong, or '' when all is well.

    Readiness has no checks beyond being able to answer: an unready adapter loses its
    endpoints, which makes the APIService unavailable and blocks namespace deletion in the
    whole cluster. A missing prediction is reported on the metric request instead.
    """

    checks: dict[str, Callable[[], str]] = dataclasses.field(default_factory=dict)

    def failures(self) -> dict[str, str]:
        results = {name: check() for name, check in self.checks.items()}
        return {name: problem for name, problem in results.items() if problem}


PROVIDER = web.AppKey("provider", adapter.ExternalMetricsProvider)
PREDICTIONS = web.AppKey("predictions", adapter.TargetPredictions)
INSTRUMENTATION = web.AppKey("instrumentation", Instrumentation)
HEALTH = web.AppKey("health", Health)


async def metric_values(request: web.Request) -> web.Response:
    discovery.require_json(request)
    namespace = request.match_info["namespace"]
    metric = request.match_info["metric"]
    selector = adapter.parse_selector(request.query.get("labelSelector", ""))
    values = request.app[PROVIDER].get_values(namespace, metric, selector)
    if not values:
        # The provider contract forbids this; an empty list would look like data to no one.
        raise adapter.MetricNotFound(
            f"the server could not find the metric {metric} for namespace {namespace}"
        )
    now = datetime.datetime.now(datetime.UTC)
    age = request.app[INSTRUMENTATION].value_age
    items = []
    for value in values:
        age.observe(max(0.0, (now - value.timestamp).total_seconds()))
        item: dict[str, Any] = {
            "metricName": metric,
            "metricLabels": dict(value.labels),
            "timestamp": rfc3339(value.timestamp),
        }
        if value.window is not None:
            item["window"] = value.window
        item["value"] = format_quantity(value.value)
        items.append(item)
    return json_response(
        {
            "kind": "ExternalMetricValueList",
            "apiVersion": discovery.GROUP_VERSION,
            "metadata": {},
            "items": items,
        }
    )


async def target_prediction(request: web.Request) -> web.Response:
    """metrics-api: one target's predictions as JSON (point `valueLocation` at a field)."""
    discovery.require_json(request)
    namespace, target = request.match_info["namespace"], request.match_info["target"]
    values = request.app[PREDICTIONS].target_values(namespace, target)
    replicas = values[adapter.REPLICAS]
    body = {
        "namespace": namespace,
        "target": target,
        adapter.REPLICAS: int(replicas.value),
        "predicted_load": {
            name.removeprefix("predicted_"): float(value.value)
            for name, value in values.items()
            if name != adapter.REPLICAS
        },
        "timestamp": rfc3339(replicas.timestamp),
        "window": replicas.window,
    }
    return json_response(body)


async def resource_list(request: web.Request) -> web.Response:
    discovery.require_json(request)
    names = discovery.resource_names(request.app[PROVIDER])
    return json_response(discovery.api_resource_list(names))


async def group(request: web.Request) -> web.Response:
    discovery.require_json(request)
    return json_response(discovery.api_group())


async def apis(request: web.Request) -> web.Response:
    version = discovery.negotiate_apis(request)
    if version is None:
        return discovery.legacy_apis_response()
    names = discovery.resource_names(request.app[PROVIDER])
    return discovery.aggregated_response(request, names, version)


async def version(request: web.Request) -> web.Response:
    discovery.require_json(request)
    return json_response(VERSION_INFO)


async def ok(request: web.Request) -> web.Response:
    """/healthz and /readyz: the server answers, so it is ready (see `Health`)."""
    return _health_answer(request, {})


async def livez(request: web.Request) -> web.Response:
    return _health_answer(request, request.app[HEALTH].failures())


async def openapi(request: web.Request) -> web.Response:
    """/openapi/v2, /openapi/v3 and the group-version's v3 document (`apiservice.openapi`);
    any other /openapi/v3 path is a 404."""
    document = openapi_documents.DOCUMENTS.get(request.path)
    if document is None:
        raise StatusError(404, "the server could not find the requested resource")
    return openapi_documents.response(request, document)


async def prometheus_metrics(request: web.Request) -> web.Response:
    # The process collector reads /proc: cheap, but file I/O, so not on the event loop.
    body = await asyncio.to_thread(request.app[INSTRUMENTATION].exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _health_answer(request: web.Request, failures: dict[str, str]) -> web.Response:
    if "verbose" in request.query:
        lines = [f"[-]{name} failed: {problem}" for name, problem in failures.items()]
        lines.append("[+]ping ok")
        lines.append(f"{request.path.lstrip('/')} check {'failed' if failures else 'passed'}")
        text = "\n".join(lines) + "\n"
    else:
        text = "ok" if not failures else "\n".join(failures) + "\n"
    return web.Response(text=text, status=500 if failures else 200)


def rfc3339(moment: datetime.datetime) -> str:
    """UTC, second precision, as `metav1.Time` marshals."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_info() -> dict[str, str]:
    try:
        release = metadata.version("predictive-metrics-adapter")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        release = "0.0.0"
    major, minor = (release.split(".") + ["0"])[:2]
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{release}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "cpython",
        "platform": f"{platform.system().lower()}/{machine}",
    }


VERSION_INFO = version_info()
"""Computed once at import: reading package metadata touches the file system."""
