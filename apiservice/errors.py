"""The exceptions of the `apiservice` package.

```
ApiServiceError             base
├── ConfigError             flags or settings rejected; lists every problem (exit code 2)
├── KubeAPIError            a call to the Kubernetes API failed (TokenReview, SAR, ConfigMap)
├── TrustError              the published authentication configuration is unusable
└── StatusError             an answer for the client, rendered as a metav1.Status
```

Errors from the domain (`adapter`) reach the HTTP layer as they are; `apiservice.status` is
the one place that turns any exception into a status code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ApiServiceError(Exception):
    """Base of the API surface's errors."""


class ConfigError(ApiServiceError):
    """Settings that cannot run; `problems` names each one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid settings, {len(self.problems)} problem(s):\n{listed}")


class KubeAPIError(ApiServiceError):
    """The Kubernetes API could not answer; the cause is chained, the message is loggable."""


class TrustError(ApiServiceError):
    """The authentication configuration (ConfigMap values) cannot be used."""


class StatusError(ApiServiceError):
    """An error answer: code, Kubernetes reason, message, optional details and headers."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else None
