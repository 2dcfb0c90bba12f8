"""The exceptions of the `forecaster` package.

```
ForecasterError             base
├── ArtifactError           a model folder is missing, corrupt or incompatible; names the file
├── InvalidSeries           inputs the model cannot read (irregular timestamps, wrong shapes)
└── InsufficientHistory     too little history for any method (no observed value at all)
```

Callers in the adapter treat `InvalidSeries` and `InsufficientHistory` as per-target problems
(skip the target this cycle) and `ArtifactError` as fatal at start-up. torch and numpy errors
are chained as causes, never exposed as such.
"""

from __future__ import annotations


class ForecasterError(Exception):
    """Base of the forecaster's errors."""


class ArtifactError(ForecasterError):
    """A model folder cannot be used; the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class InvalidSeries(ForecasterError):
    """The timestamps or values cannot be read as one regular series."""


class InsufficientHistory(ForecasterError):
    """Not a single observed value to forecast from."""
