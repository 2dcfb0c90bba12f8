"""Discovery documents for external.metrics.k8s.io/v1beta1, and content negotiation.

- ``/apis/external.metrics.k8s.io/v1beta1``: the APIResourceList that the aggregator's
  availability check and legacy discovery read. It always lists at least one resource (an
  empty list makes every kubectl and helm call warn), each namespaced with verb ``get`` only:
  advertising ``delete`` or ``list`` invites the namespace and garbage-collector controllers.
- ``/apis/external.metrics.k8s.io``: the APIGroup.
- ``/apis``: an APIGroupList for plain JSON; aggregated discovery (apidiscovery.k8s.io v2 and
  v2beta1) when the aggregator asks for it, with an ETag; and 406 when only aggregated types we
  do not serve are acceptable, which makes every aggregator version fall back to the legacy
  documents (kube-apiserver 1.27.0-1.27.5 and 1.28.0-1.28.1 fell back on nothing else).

The documents are built from the provider's metric list on each request: a few names, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

import adapter
from apiservice.errors import StatusError
from apiservice.status import JSON, json_response

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
KIND = "ExternalMetricValueList"
PLACEHOLDER = "externalmetrics"
"""Listed when no metric is known yet, so that discovery is never empty."""

_DISCOVERY_GROUP = "apidiscovery.k8s.io"
_AGGREGATED_VERSIONS = ("v2", "v2beta1")


def resource_names(provider: adapter.ExternalMetricsProvider) -> list[str]:
    names = sorted({info.name for info in provider.list_metrics()})
    return names or [PLACEHOLDER]


def api_resource_list(names: Sequence[str]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": name, "singularName": "", "namespaced": True, "kind": KIND, "verbs": ["get"]}
            for name in names
        ],
    }


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list() -> dict[str, Any]:
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def aggregated_discovery(names: Sequence[str], version: str) -> dict[str, Any]:
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{_DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": GROUP},
                "versions": [
                    {
                        "version": VERSION,
                        "freshness": "Current",
                        "resources": [
                            {
                                "resource": name,
                                "scope": "Namespaced",
                                "singularResource": "",
                                "responseKind": {"group": GROUP, "version": VERSION, "kind": KIND},
                                "verbs": ["get"],
                            }
                            for name in names
                        ],
                    }
                ],
            }
        ],
    }


# --- content negotiation -------------------------------------------------------------------

MediaRange = tuple[str, dict[str, str]]


def media_ranges(accept: str) -> list[MediaRange]:
    """The ranges of an Accept header, most preferred first (by q, then by order)."""
    ranges: list[tuple[float, int, MediaRange]] = []
    for position, item in enumerate(accept.split(",")):
        kind, *raw_params = (part.strip() for part in item.split(";"))
        if not kind:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            name, _, value = raw.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 0.0
        if quality > 0:
            ranges.append((-quality, position, (kind.lower(), params)))
    ranges.sort()
    return [media for _, _, media in ranges]


def _plain_json(media: MediaRange) -> bool:
    kind, params = media
    if kind in ("*/*", "application/*"):
        return True
    return kind == JSON and "as" not in params and "g" not in params


def require_json(request: web.Request) -> None:
    """406 unless the client accepts plain JSON (all this server writes)."""
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return
    if not any(_plain_json(media) for media in media_ranges(accept)):
        raise StatusError(406, f"only the following media types are accepted: {JSON}")


def negotiate_apis(request: web.Request) -> str | None:
    """For /apis: the aggregated-discovery version to answer with, or None for the legacy
    APIGroupList; 406 if neither is acceptable."""
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return None
    for media in media_ranges(accept):
        kind, params = media
        if kind == JSON and params.get("g") == _DISCOVERY_GROUP:
            if (
                params.get("as") == "APIGroupDiscoveryList"
                and params.get("v") in _AGGREGATED_VERSIONS
            ):
                return params["v"]
            continue
        if _plain_json(media):
            return None
    raise StatusError(
        406,
        f"only the following media types are accepted: {JSON}, "
        + ", ".join(
            f"{JSON};g={_DISCOVERY_GROUP};v={version};as=APIGroupDiscoveryList"
            for version in _AGGREGATED_VERSIONS
        ),
    )


def aggregated_response(request: web.Request, names: Sequence[str], version: str) -> web.Response:
    body = json.dumps(aggregated_discovery(names, version), separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
    headers = {
        "ETag": etag,
        "Vary": "Accept",
        "Content-Type": f"{JSON};g={_DISCOVERY_GROUP};v={version};as=APIGroupDiscoveryList",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)


def legacy_apis_response() -> web.Response:
    return json_response(api_group_list(), headers={"Vary": "Accept"})
