"""Every error answer as a `metav1.Status`, and the one map from exceptions to HTTP codes.

Clients of an aggregated API (the HPA through client-go, kubectl, KEDA) decode error bodies
as `Status` objects; a bare text body would surface as a decoding error instead of the
reason. 5xx messages are generic: the detail goes to the log, once, with its traceback, and
never to the client.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

import adapter
from apiservice.errors import StatusError

logger = logging.getLogger(__name__)

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    # metav1 has no reason for 431; to the API the request is malformed, as 400 says.
    431: "BadRequest",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

JSON = "application/json"

MESSAGE_LIMIT = 100
"""Characters of a parser's reason kept in a message."""

INTERNAL_ERROR = "Internal error occurred: the server could not handle the request"

SHUTTING_DOWN = "the server is shutting down"

_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")
"""A quoted part of a parser's message: it echoes the request."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with exactly ``Content-Type: application/json`` (client-go decodes by it)."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def status_body(
    code: int, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown" if code < 500 else "InternalError"),
    }
    if details:
        body["details"] = dict(details)
    body["code"] = code
    return body


def status_response(error: StatusError) -> web.Response:
    return json_response(
        status_body(error.code, error.message, error.details),
        status=error.code,
        headers=error.headers,
    )


def from_exception(exc: BaseException, request: web.Request) -> StatusError:
    """The answer for an exception raised while handling `request`."""
    match exc:
        case StatusError():
            return exc
        case adapter.InvalidSelector():
            return StatusError(400, f"invalid labelSelector: {exc}")
        case adapter.MetricNotFound():
            metric = request.match_info.get("metric", "")
            return StatusError(
                404, str(exc), details={"group": "external.metrics.k8s.io", "kind": metric}
            )
        case adapter.PredictionUnavailable():
            headers = None
            if exc.retry_after is not None:
                headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
            return StatusError(503, str(exc), headers=headers)
        case web.HTTPMethodNotAllowed():
            return StatusError(
                405,
                f"the server does not allow this method on the requested resource "
                f"({request.method} {request.path})",
                headers={"Allow": exc.headers.get("Allow", "GET")},
            )
        case web.HTTPNotFound():
            return StatusError(404, "the server could not find the requested resource")
        case web.HTTPException() if exc.status_code >= 400:
            return StatusError(exc.status_code, exc.reason)
    logger.error("internal error while handling %s %s", request.method, request.path, exc_info=exc)
    return StatusError(500, INTERNAL_ERROR)


def malformed_request(exc: HttpProcessingError) -> StatusError:
    """The answer to a request that aiohttp's parser rejected, quoting none of the request.

    A request line or header over the size limit is a 431, as Go's net/http (and so
    kube-apiserver) answers both, for it counts the request line toward the header limit;
    anything else is a 400. The message is the parser's reason, quoted parts removed, on one
    short line: fit for the log and the client alike.
    """
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        size = f"the {limit}-byte limit" if limit is not None else "the limit"
        return StatusError(431, f"the request line or a header field is longer than {size}")
    first = exc.message.partition("\n")[0]
    reason = _QUOTED.sub("...", first).rstrip(": ")[:MESSAGE_LIMIT]
    reason = "".join(c if c.isprintable() else "?" for c in reason) or type(exc).__name__
    return StatusError(400, f"malformed HTTP request: {reason}")


@web.middleware
async def status_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render any error raised below as a `Status` (successful answers pass through)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        return status_response(from_exception(exc, request))
    except Exception as exc:
        return status_response(from_exception(exc, request))
