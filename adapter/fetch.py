"""Fetching history: the synchronous `HistorySource` on a bounded thread pool, off the loop.

`Fetcher.update` asks the source for only what is new in each of a target's histories (see
`adapter.history`), all of them concurrently, and merges the answers. The pool's threads
bound how many queries run at once across all targets. A query that fails leaves its history
as it was (the next cycle asks again) and fails the target with the source's error; samples
the history refused fail it with `ValueRefused` until the query's answer is clean again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from adapter.errors import SourceError
from adapter.history import History, Points
from adapter.prometheus import HistorySource
from adapter.state import TargetState


class Fetcher:
    def __init__(self, source: HistorySource, concurrency: int) -> None:
        self._source = source
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, "history")

    async def series_names(self, selector: str) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._source.series_names, selector)

    async def update(self, state: TargetState, now: float) -> int:
        """Fetch and merge what is new for the target; the number of queries sent."""
        jobs: list[tuple[str, History, str, tuple[int, int]]] = []
        for name, history in state.histories.items():
            span = history.missing(now)
            query = state.queries.get(name)
            if span is not None and query is not None:
                jobs.append((name, history, query, span))
        answers = await asyncio.gather(
            *(self._range(query, span, history.step) for _, history, query, span in jobs),
            return_exceptions=True,
        )
        failure: tuple[str, BaseException] | None = None
        for (name, history, _, span), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, BaseException):
                failure = failure or (name, answer)
            else:
                history.merge(span[0], span[1], answer)
        if failure is not None:
            name, error = failure
            if isinstance(error, SourceError):
                raise type(error)(f"cannot read history ({name}): {error}") from error
            raise error
        state.check_refusals()
        return len(jobs)

    async def _range(self, query: str, span: tuple[int, int], step: int) -> list[Points]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self._source.query_range, query, span[0], span[1], step
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
