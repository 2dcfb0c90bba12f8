"""The OpenAPI documents of external.metrics.k8s.io/v1beta1, and how they are answered.

- ``/openapi/v2``: a Swagger 2.0 document, which kube-apiserver's aggregator downloads about
  once a minute (with If-None-Match) and merges into its own;
- ``/openapi/v3``: the OpenAPI v3 discovery document, which names the one group-version
  document below with its hash, so that clients cache it by URL;
- ``/openapi/v3/apis/external.metrics.k8s.io/v1beta1``: that OpenAPI 3.0 document.

The documents describe the two GET paths the server serves under the group-version (the
resource list and the metric), with the names kube-openapi gives the types they return. The
descriptions are this project's own, so the aggregator keeps the shared apimachinery types
apart from its own (renamed with a ``_v2`` suffix in its merged v2 document). Metric names are
not in the documents (a path template covers them all), so the documents are constants: this
module builds them once, at import, from literals. It must not do I/O, nor read the provider
or any other state.

Each answer carries an ETag (the quoted upper-case hex SHA-512 of the body, as kube-openapi
computes it) and honours If-None-Match with a 304, since the aggregator polls. Only JSON is
written: a client that accepts nothing JSON gets a 406, as from the discovery handlers.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
from typing import Any

from aiohttp import web

from apiservice import discovery
from apiservice.status import JSON

BASE = f"/apis/{discovery.GROUP_VERSION}"
V3_GROUP_VERSION = f"apis/{discovery.GROUP_VERSION}"
"""The group-version's key in the v3 discovery document (and its path below /openapi/v3/)."""

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_EXTERNAL = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1"
VALUE_LIST = f"{_EXTERNAL}.ExternalMetricValueList"
VALUE = f"{_EXTERNAL}.ExternalMetricValue"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
TIME = f"{_META}.Time"
LIST_META = f"{_META}.ListMeta"
STATUS = f"{_META}.Status"
STATUS_DETAILS = f"{_META}.StatusDetails"
STATUS_CAUSE = f"{_META}.StatusCause"
RESOURCE_LIST = f"{_META}.APIResourceList"
RESOURCE = f"{_META}.APIResource"

_V2_REFS = "#/definitions/"
_V3_REFS = "#/components/schemas/"
_YEAR = datetime.timedelta(days=365)


# --- schemas (written with Swagger 2.0 references; the v3 copy rewrites them) --------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _V2_REFS + name}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "kind": kind, "version": version}]


_TYPE_META = {
    "apiVersion": _string("The versioned schema of this object."),
    "kind": _string("The type of this object, in CamelCase."),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    VALUE_LIST: {
        "type": "object",
        "description": "The values of one external metric that match a label selector.",
        "required": ["items"],
        "properties": {
            **_TYPE_META,
            "metadata": _ref(LIST_META),
            "items": {
                "type": "array",
                "items": _ref(VALUE),
                "description": "One value per series; never empty (no data is an error).",
            },
        },
        "x-kubernetes-group-version-kind": _gvk(
            discovery.GROUP, discovery.VERSION, "ExternalMetricValueList"
        ),
    },
    VALUE: {
        "type": "object",
        "description": "The value of one series of an external metric, named by its labels.",
        "required": ["metricName", "metricLabels", "timestamp", "value"],
        "properties": {
            **_TYPE_META,
            "metricName": _string("The metric's name."),
            "metricLabels": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "The labels that name this series of the metric.",
            },
            "timestamp": _ref(TIME),
            "window": {
                "type": "integer",
                "format": "int64",
                "description": "Seconds before the timestamp that the value covers, if any.",
            },
            "value": _ref(QUANTITY),
        },
        "x-kubernetes-group-version-kind": _gvk(
            discovery.GROUP, discovery.VERSION, "ExternalMetricValue"
        ),
    },
    QUANTITY: {
        "type": "string",
        "description": "A Kubernetes quantity in canonical form, such as 7, 2500m or 3k.",
    },
    TIME: {
        "type": "string",
        "format": "date-time",
        "description": "An RFC 3339 time, in UTC, to the second.",
    },
    LIST_META: {
        "type": "object",
        "description": "The metadata of a list; empty in every answer of this server.",
        "properties": {
            "continue": _string("A token to read the rest of a paged list."),
            "remainingItemCount": {
                "type": "integer",
                "format": "int64",
                "description": "How many items a paged list has after this page.",
            },
            "resourceVersion": _string("The version of the list, for watches."),
            "selfLink": _string("Deprecated; never set."),
        },
    },
    STATUS: {
        "type": "object",
        "description": "The answer to a request that failed.",
        "properties": {
            **_TYPE_META,
            "code": {"type": "integer", "format": "int32", "description": "The HTTP status."},
            "details": _ref(STATUS_DETAILS),
            "message": _string("What went wrong, for a person."),
            "metadata": _ref(LIST_META),
            "reason": _string("What went wrong, as a CamelCase word (NotFound, Forbidden...)."),
            "status": _string("Failure."),
        },
        "x-kubernetes-group-version-kind": _gvk("", "v1", "Status"),
    },
    STATUS_DETAILS: {
        "type": "object",
        "description": "What a failure concerns.",
        "properties": {
            "causes": {
                "type": "array",
                "items": _ref(STATUS_CAUSE),
                "description": "The causes of the failure, where there are several.",
            },
            "group": _string("The API group of the resource concerned."),
            "kind": _string("The kind (here: the metric) concerned."),
            "name": _string("The name of the object concerned."),
            "retryAfterSeconds": {
                "type": "integer",
                "format": "int32",
                "description": "Seconds to wait before trying again.",
            },
            "uid": _string("The UID of the object concerned."),
        },
    },
    STATUS_CAUSE: {
        "type": "object",
        "description": "One cause of a failure.",
        "properties": {
            "field": _string("The field of the request at fault, if any."),
            "message": _string("What is wrong, for a person."),
            "reason": _string("What is wrong, as a word."),
        },
    },
    RESOURCE_LIST: {
        "type": "object",
        "description": "The resources of a group-version: here, the metric names served.",
        "required": ["groupVersion", "resources"],
        "properties": {
            **_TYPE_META,
            "groupVersion": _string("The group-version listed."),
            "resources": {
                "type": "array",
                "items": _ref(RESOURCE),
                "description": "One entry per metric name (never empty).",
            },
        },
        "x-kubernetes-group-version-kind": _gvk("", "v1", "APIResourceList"),
    },
    RESOURCE: {
        "type": "object",
        "description": "One resource of a group-version: here, one metric name.",
        "required": ["name", "singularName", "namespaced", "kind", "verbs"],
        "properties": {
            "categories": _strings("The categories the resource belongs to."),
            "group": _string("The group, where it differs from the list's."),
            "kind": _string("The kind of the resource's answers."),
            "name": _string("The resource's plural name (here: the metric's name)."),
            "namespaced": {"type": "boolean", "description": "Whether it is namespaced."},
            "shortNames": _strings("Short names for kubectl."),
            "singularName": _string("The singular name; empty here."),
            "storageVersionHash": _string("The hash of the stored version, if stored."),
            "verbs": _strings("The verbs the resource supports (here: get)."),
            "version": _string("The version, where it differs from the list's."),
        },
    },
}


# --- paths ---------------------------------------------------------------------------------

_TAG = "externalMetrics_v1beta1"
_ERRORS = {
    "400": "The label selector does not parse.",
    "401": "No credentials, or credentials that do not authenticate.",
    "403": "Not authorized by a SubjectAccessReview.",
    "404": "No such metric in the namespace, or no series matches the selector.",
    "429": "Too many reviews queued; retry after the Retry-After header's seconds.",
    "503": "No fresh prediction yet, or the Kubernetes API did not answer a review.",
}
_GVK = {"group": discovery.GROUP, "kind": "ExternalMetricValue", "version": discovery.VERSION}


def _v2_paths() -> dict[str, Any]:
    def answers(schema: str, errors: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"200": {"description": "OK", "schema": _ref(schema)}}
        for code in errors:
            out[code] = {"description": _ERRORS[code], "schema": _ref(STATUS)}
        return out

    return {
        # Kubernetes writes this path with a trailing slash; this server serves it without.
        BASE: {
            "get": {
                "description": "The metric names served, as the group-version's resources.",
                "operationId": "getExternalMetricsV1beta1APIResources",
                "produces": [JSON],
                "schemes": ["https"],
                "tags": [_TAG],
                "responses": answers(RESOURCE_LIST, ["401", "403"]),
            }
        },
        f"{BASE}/namespaces/{{namespace}}/{{metric}}": {
            "get": {
                "description": "The values of a metric in a namespace, by label selector.",
                "operationId": "listExternalMetricsV1beta1NamespacedExternalMetricValue",
                "produces": [JSON],
                "schemes": ["https"],
                "tags": [_TAG],
                "parameters": [
                    {
                        "name": "labelSelector",
                        "in": "query",
                        "type": "string",
                        "uniqueItems": True,
                        "description": "Which series of the metric to return (all if absent).",
                    }
                ],
                "responses": answers(VALUE_LIST, ["400", "401", "403", "404", "429", "503"]),
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": _GVK,
            },
            "parameters": [
                {
                    "name": "namespace",
                    "in": "path",
                    "required": True,
                    "type": "string",
                    "uniqueItems": True,
                    "description": "The namespace of the metric's series.",
                },
                {
                    "name": "metric",
                    "in": "path",
                    "required": True,
                    "type": "string",
                    "uniqueItems": True,
                    "description": "The metric's name, as the resource list names it.",
                },
            ],
        },
    }


_INFO = {
    "title": "predictive-metrics-adapter: external.metrics.k8s.io",
    "version": discovery.VERSION,
}
_BEARER = {
    "type": "apiKey",
    "in": "header",
    "name": "authorization",
    "description": "A bearer token, checked by a TokenReview.",
}

SWAGGER: dict[str, Any] = {
    "swagger": "2.0",
    "info": _INFO,
    "paths": _v2_paths(),
    "definitions": SCHEMAS,
    "securityDefinitions": {"BearerToken": _BEARER},
    "security": [{"BearerToken": []}],
}
"""The Swagger 2.0 document, as a JSON value."""


def _to_v3(value: Any) -> Any:
    """`value` with every Swagger 2.0 reference pointing at components/schemas instead."""
    if isinstance(value, dict):
        return {
            key: (
                _V3_REFS + item.removeprefix(_V2_REFS)
                if key == "$ref" and isinstance(item, str)
                else _to_v3(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_to_v3(item) for item in value]
    return value


def _v3_parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    out = {key: parameter[key] for key in ("name", "in", "description")}
    if parameter.get("required"):
        out["required"] = True
    out["schema"] = {"type": parameter["type"], "uniqueItems": True}
    return out


def _v3_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, item in copy.deepcopy(_v2_paths()).items():
        converted: dict[str, Any] = {}
        for key, value in item.items():
            if key == "parameters":
                converted[key] = [_v3_parameter(p) for p in value]
                continue
            operation = {k: v for k, v in value.items() if k not in ("produces", "schemes")}
            if "parameters" in operation:
                operation["parameters"] = [_v3_parameter(p) for p in operation["parameters"]]
            operation["responses"] = {
                code: {
                    "description": answer["description"],
                    "content": {JSON: {"schema": _to_v3(answer["schema"])}},
                }
                for code, answer in operation["responses"].items()
            }
            converted[key] = operation
        paths[path] = converted
    return paths


OPENAPI_V3: dict[str, Any] = {
    "openapi": "3.0.0",
    "info": _INFO,
    "paths": _v3_paths(),
    "components": {
        "schemas": _to_v3(SCHEMAS),
        "securitySchemes": {"BearerToken": _BEARER},
    },
    "security": [{"BearerToken": []}],
}
"""The OpenAPI 3.0 document of the group-version, as a JSON value."""


# --- the documents as served ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Document:
    """A served document: its bytes, their hash (upper-case hex SHA-512) and the ETag."""

    body: bytes
    hash: str
    etag: str


def _document(value: dict[str, Any]) -> Document:
    body = json.dumps(value, separators=(",", ":")).encode()
    digest = hashlib.sha512(body).hexdigest().upper()
    return Document(body=body, hash=digest, etag=f'"{digest}"')


V2 = _document(SWAGGER)
V3_GROUP = _document(OPENAPI_V3)
V3_GROUP_URL = f"/openapi/v3/{V3_GROUP_VERSION}?hash={V3_GROUP.hash}"
V3_DISCOVERY = _document({"paths": {V3_GROUP_VERSION: {"serverRelativeURL": V3_GROUP_URL}}})

DOCUMENTS = {
    "/openapi/v2": V2,
    "/openapi/v3": V3_DISCOVERY,
    f"/openapi/v3/{V3_GROUP_VERSION}": V3_GROUP,
}
"""Every document by the path it is served at."""


def response(request: web.Request, document: Document) -> web.Response:
    """The answer to `request` for `document`: 200, 304 on a matching If-None-Match, or, for
    the v3 document asked by a stale hash, a 301 to its current URL (kube-openapi does the
    same). A request with the current hash may be cached for good."""
    discovery.require_json(request)
    headers = {"ETag": document.etag, "Vary": "Accept"}
    requested_hash = request.query.get("hash")
    if document is V3_GROUP and requested_hash:
        if requested_hash != document.hash:
            return web.Response(status=301, headers={**headers, "Location": V3_GROUP_URL})
        expires = datetime.datetime.now(datetime.UTC) + _YEAR
        headers["Cache-Control"] = "public, immutable"
        headers["Expires"] = expires.strftime("%a, %d %b %Y %H:%M:%S GMT")
    if _matches(request.headers.get("If-None-Match", ""), document.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=document.body, content_type=JSON, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weakly, as RFC 9110 compares it) or is *."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip().removeprefix("W/")
        if candidate in ("*", etag):
            return True
    return False
