"""Where history comes from: the `HistorySource` seam, and Prometheus behind it.

`PrometheusSource` is the only code that talks to Prometheus (import-linter keeps it so). It
uses the official `prometheus-api-client` with a `requests` session that carries the
connection settings: a CA bundle or (discouraged) no verification, a client certificate,
a bearer token re-read from its file on every request (projected service-account tokens
rotate), or basic auth with the password from a file; a per-request timeout; and retries with
exponential backoff on connection errors and 429/5xx answers. Range queries longer than
Prometheus' 11,000 points per series are split into chunks.

The client is synchronous: the refresher calls it from worker threads, never from the event
loop. Failures surface as `SourceUnavailable` (cannot reach or authenticate), `QueryFailed`
(Prometheus rejected the query) or `MalformedAnswer` (the answer is not a matrix of
``[timestamp, "number"]`` samples: no ``data``, ``result: null``, a sample without a value,
a value that is not a number); library exceptions are chained, never leaked. Whatever a
server answers, the only exceptions that leave this module are these `SourceError`s, so a
broken answer fails the target that asked, never the refresh. Secrets are never logged or
put into error messages, and an answer is quoted only in a short excerpt.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import reprlib
import urllib.parse
from pathlib import Path
from typing import Protocol

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapter.errors import MalformedAnswer, QueryFailed, SourceError, SourceUnavailable
from adapter.history import Points

__all__ = [
    "HistorySource",
    "MalformedAnswer",
    "PrometheusSettings",
    "PrometheusSource",
    "QueryFailed",
    "SourceError",
    "SourceUnavailable",
]

logger = logging.getLogger(__name__)

MAX_POINTS = 11_000
CHUNK_POINTS = 10_000


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

    @property
    def shown_url(self) -> str:
        """The URL without the user and password it may hold: what messages and logs show."""
        parts = urllib.parse.urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))

    def problems(self) -> list[str]:
        found = []
        if not self.url.startswith(("http://", "https://")):
            found.append(f"--prometheus-url: {self.shown_url!r} must be an http(s) URL")
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

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

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
                f"Prometheus at {self.settings.shown_url} is unreachable: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise _status_error(response.status_code, response.text, selector)
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or no "data"
            raise MalformedAnswer(
                f"Prometheus answered {selector!r} without a list of series: "
                f"{_excerpt(response.text)}"
            ) from exc
        if not isinstance(data, list):
            raise MalformedAnswer(
                f"Prometheus answered {selector!r} with data that is not a list of series: "
                f"{_excerpt(data)}"
            )
        names = {item.get("__name__") for item in data if isinstance(item, dict)}
        return sorted(name for name in names if isinstance(name, str) and name)

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
        except requests.JSONDecodeError as exc:  # a RequestException too: test it first
            raise MalformedAnswer(
                f"Prometheus answered {query!r} with text that is not JSON"
            ) from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(
                f"Prometheus at {self.settings.shown_url} is unreachable: {type(exc).__name__}"
            ) from exc
        except (KeyError, TypeError) as exc:  # the client reads ["data"]["result"] unchecked
            raise MalformedAnswer(f"Prometheus answered {query!r} without data.result") from exc
        return _matrix(result, query)


def _matrix(result: object, query: str) -> list[tuple[tuple[tuple[str, str], ...], Points]]:
    """The series of a range query's ``data.result``; `MalformedAnswer` if it is not a matrix."""
    if not isinstance(result, list):
        raise MalformedAnswer(
            f"Prometheus answered {query!r} with a result that is not a list of series: "
            f"{_excerpt(result)}"
        )
    out = []
    for series in result:
        values = series.get("values") if isinstance(series, dict) else None
        metric = series.get("metric", {}) if isinstance(series, dict) else None
        if not isinstance(values, list) or not isinstance(metric, dict):
            raise MalformedAnswer(
                f"Prometheus answered {query!r} with a series that has no list of values and "
                f"labels: {_excerpt(series)}"
            )
        try:
            # numpy converts the strings itself ("NaN", "+Inf" included): no Python loop per point.
            samples = np.array(values, dtype=object).reshape(-1, 2) if values else _NO_SAMPLES
            if len(samples) != len(values) or np.equal(samples, _NULL).any():
                raise ValueError("not a list of pairs of numbers")
            stamps = samples[:, 0].astype(np.float64)
            data = samples[:, 1].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise MalformedAnswer(
                f"Prometheus answered {query!r} with a sample that is not "
                f'[timestamp, "number"]: {_excerpt(_first_malformed(values))}'
            ) from exc
        if not np.all(np.isfinite(stamps)):
            raise MalformedAnswer(
                f"Prometheus answered {query!r} with a timestamp that is not finite"
            )
        labels = tuple(sorted((str(k), str(v)) for k, v in metric.items()))
        out.append((labels, (stamps.astype(np.int64), data)))
    return out


def _first_malformed(values: list[object]) -> object:
    for sample in values:
        try:
            if not isinstance(sample, list | tuple) or len(sample) != 2 or None in sample:
                return sample
            float(sample[0])
            float(sample[1])
        except (TypeError, ValueError):
            return sample
    return values


_NO_SAMPLES = np.empty((0, 2), dtype=object)
_NULL = np.array(None, dtype=object)
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxdict, _QUOTE.maxstring = 3, 4, 4, 40


def _excerpt(anything: object) -> str:
    """A bounded quotation of something a server answered (bounded work, too)."""
    return _QUOTE.repr(anything)


def _status_error(code: int, body: str, query: str) -> SourceError:
    detail = body[:256]
    if code in (401, 403):
        return SourceUnavailable(f"Prometheus refused the credentials (HTTP {code})")
    if code in (400, 422):
        return QueryFailed(f"Prometheus rejected {query!r} (HTTP {code}): {detail}")
    return SourceUnavailable(f"Prometheus answered HTTP {code}: {detail}")
