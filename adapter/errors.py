"""The exceptions of the `adapter` package, by what the caller should do next.

```
AdapterError                    base
├── InvalidSelector             the request's label selector is malformed     (400, permanent)
├── MetricNotFound              no such metric, or no series matches          (404, permanent)
├── PredictionUnavailable       known, but no fresh prediction yet or anymore (503, temporary)
├── InvalidConfiguration        a configuration or values file is rejected; carries every
│                               problem found, so that one reload reports all of them
└── RefreshFailed               one forecast target got no new prediction this cycle
    ├── SourceError             its history could not be read
    │   ├── SourceUnavailable   the source cannot be reached or refused the credentials
    │   ├── QueryFailed         the source rejected the query (fix the configuration)
    │   └── MalformedAnswer     the answer is not a matrix of numbered samples
    ├── ValueRefused            a value no load can have: not finite, negative, or beyond the
    │                           HPA's 64-bit milli-value (from the source or the forecast)
    ├── ForecastFailed          the model failed on this target's series
    └── PolicyUnavailable       no replica count can be derived (no usable usage history)
```

The API surface maps the first four to one `metav1.Status` (in `apiservice.status`, the only
place that knows HTTP codes). A `RefreshFailed` never reaches it: the refresher catches it in
one place per target, keeps its message as the target's reason (logged when it changes,
counted in ``refresh_failing``) and the prediction store answers with that reason in a
`PredictionUnavailable` (503) once the target's last values have expired. Library exceptions
are chained as causes, never subclassed.
"""

from __future__ import annotations

from collections.abc import Sequence


class AdapterError(Exception):
    """Base of the adapter's errors."""


class InvalidSelector(AdapterError):
    """The label selector cannot be parsed or holds an invalid key or value."""


class MetricNotFound(AdapterError):
    """The metric is unknown in this namespace, or no series matches the selector.

    Never answered with an empty list: the HPA treats an empty list as an error anyway, and a
    404 says why.
    """


class PredictionUnavailable(AdapterError):
    """The target is known but has no fresh prediction (warming up, stale, source down).

    Temporary: the HPA holds its replica count and retries on its next sync. Serving a 0
    instead would scale the workload in.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidConfiguration(AdapterError):
    """A file was rejected; `problems` lists every problem, each with its location.

    The message lists the first `LISTED` problems and counts the rest, so that a file with a
    problem in each of its thousand entries is still one readable log record.
    """

    LISTED = 50

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = [f"  - {problem}" for problem in self.problems[: self.LISTED]]
        if len(self.problems) > self.LISTED:
            listed.append(f"  - ... and {len(self.problems) - self.LISTED} more")
        joined = "\n".join(listed)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{joined}")


class RefreshFailed(AdapterError):
    """One forecast target could not be refreshed this cycle; the message is the reason.

    Only that target fails: the others are fetched, forecast and published as usual.
    """


class SourceError(RefreshFailed):
    """History could not be read."""


class SourceUnavailable(SourceError):
    """The history source cannot be reached or refused the credentials (temporary)."""


class QueryFailed(SourceError):
    """The source rejected a query (bad PromQL, too many points): fix the configuration."""


class MalformedAnswer(SourceError):
    """The source answered, but not with a matrix of (timestamp, number) samples."""


class ValueRefused(RefreshFailed):
    """A value that no load, usage or replica count can be, and no HPA can be served.

    Samples are refused as they arrive (and kept out of the history); a forecast or planned
    value is refused before it is published, so a request gets a 503 with the reason instead
    of a 500 or a made-up 0.
    """


class ForecastFailed(RefreshFailed):
    """The forecaster failed on this target's series (the model's error is the cause)."""


class PolicyUnavailable(RefreshFailed):
    """No replicas can be derived (no usable usage/traffic history)."""
