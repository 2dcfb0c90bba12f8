"""The server's only Kubernetes API client: TokenReview, SubjectAccessReview, the
authentication ConfigMap, and (optionally) Kapacity-style result ConfigMaps.

The official client is synchronous, so every call runs in a worker thread and is awaited from
the event loop. Calls are kept apart by kind, each in its own *lane*: a few threads and a
bounded number of callers waiting for one. TokenReviews of unknown tokens (which anyone who
reaches the port can cause), TokenReviews of tokens that authenticated before, and
SubjectAccessReviews (which only authenticated users cause) never queue behind each other
or behind ConfigMap calls. A review waits for its turn and its answer together within a
deadline; when its lane's queue is full it is refused at once, without asking the API.

Failures become `KubeAPIError` with the cause chained: `asyncio.QueueFull` when a review was
refused (`was_refused`), `TimeoutError` past the deadline, else the client's error. Bearer
tokens are never logged or put into an error message; `TroubleLog` keeps review failures from
flooding the log. This module decides nothing about requests; `apiservice.authn` and
`apiservice.authz` turn its answers into decisions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from apiservice.errors import KubeAPIError, StatusError
from apiservice.identity import Attributes, User

logger = logging.getLogger(__name__)

AUTHENTICATION_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class LaneLimits:
    """How many calls of one kind run at once, and how many may wait for a turn."""

    running: int
    waiting: int | None
    """None: no bound, for calls only the server itself makes (their number is its own)."""


UNKNOWN_TOKEN_REVIEWS = LaneLimits(running=4, waiting=32)
"""TokenReviews of tokens not seen to authenticate lately: anyone can send those, so this
lane is what a flood of made-up tokens fills. At 0.5 s a review, 4 threads answer 8 a
second; 32 waiting is about what they answer within the default 5 s deadline, so a longer
queue would only hold requests that time out anyway."""

KNOWN_TOKEN_REVIEWS = LaneLimits(running=2, waiting=32)
"""TokenReviews of tokens that authenticated lately (renewals): a flood cannot enter it
without valid tokens, so clients that use a token (the HPA, kubectl) keep being reviewed."""

ACCESS_REVIEWS = LaneLimits(running=4, waiting=32)
"""SubjectAccessReviews: only authenticated users cause them."""

CONFIGMAPS = LaneLimits(running=4, waiting=None)
"""The authentication ConfigMap and result ConfigMaps: calls the server makes on its own, as
many as it has forecast targets at once; their deadline starts at their turn."""


class KubeAPI:
    """Reviews and reads against one Kubernetes API server."""

    def __init__(self, api_client: Any, *, timeout: float, description: str) -> None:
        self._client = api_client
        self._timeout = timeout
        self.description = description
        self._unknown_tokens = _Lane("TokenReview", UNKNOWN_TOKEN_REVIEWS)
        self._known_tokens = _Lane("TokenReview (renewal)", KNOWN_TOKEN_REVIEWS)
        self._access = _Lane("SubjectAccessReview", ACCESS_REVIEWS)
        self._configmaps = _Lane("ConfigMap", CONFIGMAPS)
        self._authentication = kubernetes.client.AuthenticationV1Api(api_client)
        self._authorization = kubernetes.client.AuthorizationV1Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, kubeconfig: Path | None, *, timeout: float) -> KubeAPI | None:
        """A client from the kubeconfig, else from the pod's service account, else None."""
        configuration = kubernetes.client.Configuration()
        # One kept-alive connection per lane thread, so that no review waits for a socket.
        configuration.connection_pool_maxsize = sum(
            lane.running
            for lane in (UNKNOWN_TOKEN_REVIEWS, KNOWN_TOKEN_REVIEWS, ACCESS_REVIEWS, CONFIGMAPS)
        )
        if kubeconfig is not None:
            try:
                client = kubernetes.config.new_client_from_config(
                    config_file=str(kubeconfig), client_configuration=configuration
                )
            except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
                raise KubeAPIError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
            return cls(client, timeout=timeout, description=f"kubeconfig {kubeconfig}")
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            return None
        return cls(
            kubernetes.client.ApiClient(configuration),
            timeout=timeout,
            description="in-cluster service account",
        )

    def close(self) -> None:
        for lane in (self._unknown_tokens, self._known_tokens, self._access, self._configmaps):
            lane.close()
        self._client.close()

    async def review_token(self, token: str, *, deadline: float, known: bool) -> User | None:
        """The user a bearer token belongs to, or None if the API server rejects it.

        `known` tokens (seen to authenticate lately) are reviewed in their own lane."""
        body = kubernetes.client.V1TokenReview(
            spec=kubernetes.client.V1TokenReviewSpec(token=token)
        )
        lane = self._known_tokens if known else self._unknown_tokens
        review = await self._call(
            lane, self._authentication.create_token_review, body, deadline=deadline
        )
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        extra = tuple(sorted((key, tuple(values)) for key, values in (user.extra or {}).items()))
        return User(
            name=user.username or "",
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra=extra,
            method="token",
        )

    async def review_access(
        self, user: User, attributes: Attributes, *, deadline: float
    ) -> AccessDecision:
        """Ask the API server whether `user` may do what `attributes` describe."""
        models = kubernetes.client
        spec = models.V1SubjectAccessReviewSpec(
            user=user.name,
            groups=list(user.groups),
            uid=user.uid or None,
            extra={key: list(values) for key, values in user.extra} or None,
        )
        if attributes.is_resource_request:
            spec.resource_attributes = models.V1ResourceAttributes(
                namespace=attributes.namespace or None,
                verb=attributes.verb,
                group=attributes.group,
                version=attributes.version,
                resource=attributes.resource,
            )
        else:
            spec.non_resource_attributes = models.V1NonResourceAttributes(
                path=attributes.path, verb=attributes.verb
            )
        body = models.V1SubjectAccessReview(spec=spec)
        review = await self._call(
            self._access,
            self._authorization.create_subject_access_review,
            body,
            deadline=deadline,
        )
        status = review.status
        if status is None:
            raise KubeAPIError("SubjectAccessReview came back without a status")
        return AccessDecision(bool(status.allowed), status.reason or status.evaluation_error or "")

    async def read_authentication_configmap(self) -> dict[str, str] | None:
        """The data of kube-system/extension-apiserver-authentication; None if it is absent."""
        namespace, name = AUTHENTICATION_CONFIGMAP
        try:
            configmap = await self._call(
                self._configmaps, self._core.read_namespaced_config_map, name, namespace
            )
        except KubeAPIError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return None
            raise
        return dict(configmap.data or {})

    async def write(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Create or replace a ConfigMap (Kapacity-compatible results; `adapter.ResultWriter`)."""
        body = kubernetes.client.V1ConfigMap(
            metadata=kubernetes.client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels={"app.kubernetes.io/managed-by": "predictive-metrics-adapter"},
            ),
            data=dict(data),
        )
        try:
            await self._call(
                self._configmaps, self._core.replace_namespaced_config_map, name, namespace, body
            )
        except KubeAPIError as exc:
            if not (isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404):
                raise
            await self._call(
                self._configmaps, self._core.create_namespaced_config_map, namespace, body
            )

    async def _call(
        self, lane: _Lane, method: Callable[..., T], *args: Any, deadline: float | None = None
    ) -> T:
        what = lane.what
        limit = self._timeout if deadline is None else deadline
        try:
            return await lane.run(method, args, limit)
        except asyncio.QueueFull as exc:
            raise KubeAPIError(
                f"{what} not sent: {lane.limits.waiting} are waiting already"
            ) from exc
        except TimeoutError as exc:
            raise KubeAPIError(f"{what} got no answer within {limit:g}s") from exc
        except ApiException as exc:
            raise KubeAPIError(f"{what} failed: HTTP {exc.status} {exc.reason}") from _bare(exc)
        except Exception as exc:  # urllib3, ssl and socket errors all mean "unreachable"
            raise KubeAPIError(f"{what} failed: {type(exc).__name__}: {exc}") from _bare(exc)


def _bare(error: BaseException) -> BaseException:
    """`error` without the worker thread's frames: they hold the HTTP response and with it
    the connection, which would stay open, out of the pool's reach, until a garbage
    collection (a flood of failing reviews would pile up connections to the API server)."""
    return error.with_traceback(None)


ERROR_TTL = 2.0
"""Seconds a failed review is remembered (per token, or per user and request): a repetition
while the API fails costs one review per 2 s, not one per request, and recovers 2 s after the
API does."""

RETRY_AFTER = "1"
"""Retry-After of a refused review, as kube-apiserver's max-in-flight filter sends."""

REFUSED = "refused"
"""A review's outcome when its lane's queue was full: it was never sent."""

FAILED = "failed"
"""A review's outcome when the API failed or missed the deadline."""


def unreviewed(outcome: str, waiting: str, failed: str) -> StatusError:
    """The answer to a request whose review has no verdict: 429 with `waiting` when it was
    `REFUSED`, else 503 with `failed`; both say when to retry."""
    if outcome == REFUSED:
        return StatusError(
            429,
            f"Too many requests, please try again later: {waiting}",
            headers={"Retry-After": RETRY_AFTER},
        )
    return StatusError(
        503,
        f"{failed}: the Kubernetes API did not answer; try again later",
        headers={"Retry-After": str(math.ceil(ERROR_TTL))},
    )


def was_refused(error: KubeAPIError) -> bool:
    """True if the call was never sent because its lane's queue was full."""
    return isinstance(error.__cause__, asyncio.QueueFull)


class TroubleLog:
    """Review trouble in the log: each kind at `level` at most once per `interval` seconds,
    with how many were left out since; the rest at DEBUG. A flood of made-up tokens against a
    failing API must not become a flood of log lines."""

    def __init__(self, logger: logging.Logger, level: int, interval: float = 60.0) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._kinds: dict[str, tuple[float, int]] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = time.monotonic()
        logged_at, left_out = self._kinds.get(kind, (-math.inf, 0))
        if now - logged_at < self._interval:
            self._kinds[kind] = (logged_at, left_out + 1)
            self._logger.debug("%s", message)
            return
        self._kinds[kind] = (now, 0)
        since = f" ({left_out} more since the last report)" if left_out else ""
        self._logger.log(self._level, "%s%s", message, since)


class _Lane:
    """Threads for one kind of call: `running` at once, `waiting` more queued, the rest
    refused. A thread's slot is freed when its HTTP call ends, not when its caller gives up,
    so a hung API server holds at most `running` threads per lane."""

    def __init__(self, what: str, limits: LaneLimits) -> None:
        self.what = what
        self.limits = limits
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.running, thread_name_prefix="kube-api"
        )
        self._turns = asyncio.Semaphore(limits.running)
        self._waiting = 0

    async def run(self, method: Callable[..., T], args: tuple[Any, ...], deadline: float) -> T:
        """`method(*args)` in a thread, within `deadline` seconds of turn and answer; raises
        `asyncio.QueueFull` at once if too many calls wait, `TimeoutError` past the deadline."""
        waiting = self.limits.waiting
        if waiting is not None and self._waiting >= waiting:
            raise asyncio.QueueFull
        loop = asyncio.get_running_loop()
        if waiting is None:  # the server's own calls: the deadline starts at the turn
            await self._turns.acquire()
        started = loop.time()
        async with asyncio.timeout(deadline):
            if waiting is not None:
                self._waiting += 1
                try:
                    await self._turns.acquire()
                finally:
                    self._waiting -= 1
            # The HTTP call gets what is left of the deadline, so that the thread is free
            # about when the caller gives up.
            remaining = max(deadline - (loop.time() - started), 0.1)
            call = functools.partial(method, *args, _request_timeout=remaining)
            future = loop.run_in_executor(self._pool, call)
            future.add_done_callback(self._finished)
            return await asyncio.shield(future)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._turns.release()
        if not future.cancelled():
            future.exception()  # retrieved here: a caller past its deadline no longer awaits it

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
