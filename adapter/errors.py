"""The exceptions of the `adapter` package, by what the caller should do next.

```
AdapterError                    base
├── InvalidSelector             the request's label selector is malformed     (400, permanent)
├── MetricNotFound              no such metric, or no series matches          (404, permanent)
├── PredictionUnavailable       known, but no fresh prediction yet or anymore (503, temporary)
└── InvalidConfiguration        a configuration or values file is rejected; carries every
                                problem found, so that one reload reports all of them
```

The API surface maps each of these to one `metav1.Status` (in `apiservice.status`, the only
place that knows HTTP codes). Library exceptions are chained as causes, never subclassed.
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
    """A file was rejected; `problems` lists every problem, each with its location."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{listed}")
