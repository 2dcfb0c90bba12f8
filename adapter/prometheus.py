"""Where history comes from: the `HistorySource` seam, and Prometheus behind it.

`PrometheusSource` is the only code that talks to Prometheus (import-linter keeps it so). It
uses the official `prometheus-api-client` with a `requests` session that carries the
connection settings: a CA bundle or (discouraged) no verification, a client certificate,
a bearer token re-read from its file on every request (projected service-account tokens
rotate), or basic auth with the password from a file; a per-request timeout; and retries with
exponential backoff on connection errors and 429/5xx answers. Range queries longer than
Prometheus' 11,000 points per series are split into chunks.

The client is synchronous: the refresher calls it from worker threads, never from the event
loop. Failures surface as `SourceUnavailable` (cannot reach or authenticate) or
`QueryFailed` (Prometheus rejected the query); library exceptions are chained, never leaked.
Secrets are never logged or put into error messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapter.errors import AdapterError
from adapter.history import Points

logger = logging.getLogger(__name__)

MAX_POINTS = 11_000
CHUNK_POINTS = 10_000


class SourceError(AdapterError):
    """History could not be read."""


class SourceUnavailable(SourceError):
    """The history source cannot be reached or refused the credentials (temporary)."""


class QueryFailed(SourceError):
    """The source rejected a query (bad PromQL, too many points): fix the configuration."""


class HistorySource(Protocol):
    """What the refresher needs from a metrics store (synchronous; call from a thread)."""

    def query_range(self, query: str, start: int, end: int, step: int) -> list[Points]:
        """Every series the query returns over [start, end] at `step`, points in time order."""
        ...

    def series_names(self, selector: str) -> list[str]:
        """Metric names of the series matching a series selector (for rule discovery)."""
        ...


@dataclasses.dataclass(frozen=True)
class PrometheusSettings:
    url: str = "http://127.0.0.1:9090"
    """Base URL of Prometheus (or Thanos, Mimir, VictoriaMetrics: the same query API)."""
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    token_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    timeout: float = 10.0
    """Seconds per request; a refresh gives up on a target rather than hang."""
    retries: int = 3
    """Attempts after the first on connection errors and 429/502/503/504, backing off."""

    def problems(self) -> list[str]:
        found = []
        if not self.url.startswith(("http://", "https://")):
            found.append(f"--prometheus-url: {self.url!r} must be an http(s) URL")
        for flag, path in (
            ("--prometheus-ca-file", self.ca_file),
            ("--prometheus-client-tls-cert-file", self.client_cert_file),
            ("--prometheus-client-tls-key-file", self.client_key_file),
            ("--prometheus-token-file", self.token_file),
            ("--prometheus-password-file", self.password_file),
        ):
            if path is not None and not path.is_file():
                found.append(f"{flag}: {path} does not exist")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            found.append("--prometheus-client-tls-cert-file and -key-file go together")
        if (self.username is None) != (self.password_file is None):
            found.append("--prometheus-username and --prometheus-password-file go together")
        if self.token_file is not None and self.username is not None:
            found.append("give a bearer token or basic auth for Prometheus, not both")
        if self.timeout <= 0:
            found.append("--prometheus-timeout: must be positive")
        return found


class _Auth(requests.auth.AuthBase):
    """Bearer token read at request time, or basic auth with a password read at request time."""

    def __init__(self, settings: PrometheusSettings) -> None:
        self._settings = settings

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        settings = self._settings
        if settings.token_file is not None:
            token = settings.token_file.read_text().strip()
            request.headers["Authorization"] = f"Bearer {token}"
        elif settings.username is not None and settings.password_file is not None:
            password = settings.password_file.read_text().rstrip("\n")
            return requests.auth.HTTPBasicAuth(settings.username, password)(request)
        return request


class PrometheusSource:
    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        session = requests.Session()
        retry = Retry(
            total=settings.retries,
            backoff_factor=0.5,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        session.verify = (
            str(settings.ca_file) if settings.ca_file else not settings.insecure_skip_verify
        )
        if settings.client_cert_file and settings.client_key_file:
            session.cert = (str(settings.client_cert_file), str(settings.client_key_file))
        session.auth = _Auth(settings)
        self._session = session
        self._client = PrometheusConnect(
            url=settings.url, session=session, timeout=settings.timeout, retry=retry
        )
        # The client mounts an adapter of its own on the URL, which outranks any shorter prefix:
        # mount ours (the same retries, a larger pool) over it, and for any other URL (redirects).
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
        for prefix in ("http://", "https://", settings.url):
            session.mount(prefix, adapter)
        self.queries = 0
        """Requests sent (for the refresh benchmark and /metrics)."""

    def query_range(self, query: str, start: int, end: int, step: int) -> list[Points]:
        merged: dict[tuple[tuple[str, str], ...], list[Points]] = {}
        chunk = CHUNK_POINTS * step
        for first in range(start, end + 1, chunk):
            last = min(end, first + chunk - step)
            for labels, points in self._range(query, first, last, step):
                merged.setdefault(labels, []).append(points)
        return [
            (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            for parts in merged.values()
        ]

    def series_names(self, selector: str) -> list[str]:
        self.queries += 1
        try:
            response = self._session.get(
                f"{self.settings.url.rstrip('/')}/api/v1/series",
                params={"match[]": selector},
                timeout=self.settings.timeout,
            )
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"Prometheus at {self.settings.url} is unreachable: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise _status_error(response.status_code, response.text, selector)
        names = {item.get("__name__", "") for item in response.json().get("data", [])}
        return sorted(name for name in names if name)

    def _range(
        self, query: str, start: int, end: int, step: int
    ) -> list[tuple[tuple[tuple[str, str], ...], Points]]:
        self.queries += 1
        try:
            result = self._client.custom_query_range(
                query,
                start_time=datetime.datetime.fromtimestamp(start, datetime.UTC),
                end_time=datetime.datetime.fromtimestamp(end, datetime.UTC),
                step=str(step),
            )
        except PrometheusApiClientException as exc:
            status, _, body = str(exc).partition(" (")
            code = int(status.rsplit(" ", 1)[-1]) if status.rsplit(" ", 1)[-1].isdigit() else 0
            raise _status_error(code, body, query) from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"Prometheus at {self.settings.url} is unreachable: {type(exc).__name__}"
            ) from exc
        out = []
        for series in result:
            values = series.get("values", [])
            # numpy parses the strings itself ("NaN", "+Inf" included): no Python loop per point.
            stamps = np.array([v[0] for v in values], dtype=np.float64).astype(np.int64)
            data = np.array([v[1] for v in values], dtype=np.float64)
            labels = tuple(sorted(series.get("metric", {}).items()))
            out.append((labels, (stamps, data)))
        return out


def _status_error(code: int, body: str, query: str) -> SourceError:
    detail = body[:256]
    if code in (401, 403):
        return SourceUnavailable(f"Prometheus refused the credentials (HTTP {code})")
    if code in (400, 422):
        return QueryFailed(f"Prometheus rejected {query!r} (HTTP {code}): {detail}")
    return SourceUnavailable(f"Prometheus answered HTTP {code}: {detail}")
