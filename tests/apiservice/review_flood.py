"""A flood of made-up bearer tokens, run as its own process (its own interpreter and GIL, as
an attacker's pod is its own machine), for `test_review_flood`.

``python review_flood.py PORT CA_FILE PATH SECONDS CONNECTIONS`` keeps CONNECTIONS
keep-alive connections busy with one request after another, each with a new random token,
for SECONDS. It prints ``started`` when the first answer arrives, then one JSON summary line:
answers by status code, the slowest answer per code, and requests still unanswered at the
end (with how long they had waited). Test support only; it asserts nothing.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import ssl
import sys
import time

import aiohttp

GRACE = 15.0
"""Seconds past the end that requests in flight may still take before they are given up."""


async def flood(port: int, ca: str, path: str, seconds: float, connections: int) -> None:
    context = ssl.create_default_context(cafile=ca)
    codes: collections.Counter[int] = collections.Counter()
    slowest: dict[int, float] = {}
    waiting: dict[int, float] = {}
    errors: collections.Counter[str] = collections.Counter()
    first = asyncio.Event()
    end = time.monotonic() + seconds
    url = f"https://localhost:{port}{path}"

    async def worker(session: aiohttp.ClientSession, number: int) -> None:
        while time.monotonic() < end:
            headers = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
            started = time.monotonic()
            waiting[number] = started
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    code = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                continue
            finally:
                waiting.pop(number, None)
            elapsed = time.monotonic() - started
            codes[code] += 1
            slowest[code] = max(slowest.get(code, 0.0), elapsed)
            if not first.is_set():
                first.set()
                print("started", flush=True)

    connector = aiohttp.TCPConnector(ssl=context, limit=connections)
    timeout = aiohttp.ClientTimeout(total=seconds + GRACE)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workers = [asyncio.create_task(worker(session, n)) for n in range(connections)]
        _, pending = await asyncio.wait(workers, timeout=seconds + GRACE)
        now = time.monotonic()
        unanswered = [now - waiting[n] for n in waiting]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    summary = {
        "codes": {str(code): count for code, count in sorted(codes.items())},
        "slowest": {str(code): round(value, 3) for code, value in sorted(slowest.items())},
        "unanswered": len(unanswered),
        "longest_unanswered": round(max(unanswered, default=0.0), 3),
        "errors": dict(errors),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    port, ca, path, seconds, connections = sys.argv[1:6]
    asyncio.run(flood(int(port), ca, path, float(seconds), int(connections)))
