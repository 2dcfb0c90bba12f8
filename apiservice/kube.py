"""The server's only Kubernetes API client: TokenReview, SubjectAccessReview, the
authentication ConfigMap, and (optionally) Kapacity-style result ConfigMaps.

The official client is synchronous, so every call runs in a small dedicated thread pool and
is awaited from the event loop; a slow API server delays only the requests that need a fresh
review, never the loop. Failures become `KubeAPIError` with the cause chained; bearer tokens
are never logged or put into an error message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from apiservice.errors import KubeAPIError
from apiservice.identity import Attributes, User

logger = logging.getLogger(__name__)

AUTHENTICATION_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str = ""


class KubeAPI:
    """Reviews and reads against one Kubernetes API server."""

    def __init__(self, api_client: Any, *, timeout: float, description: str) -> None:
        self._client = api_client
        self._timeout = timeout
        self.description = description
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="kube-api"
        )
        self._authentication = kubernetes.client.AuthenticationV1Api(api_client)
        self._authorization = kubernetes.client.AuthorizationV1Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, kubeconfig: Path | None, *, timeout: float) -> KubeAPI | None:
        """A client from the kubeconfig, else from the pod's service account, else None."""
        if kubeconfig is not None:
            try:
                client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
            except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
                raise KubeAPIError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
            return cls(client, timeout=timeout, description=f"kubeconfig {kubeconfig}")
        configuration = kubernetes.client.Configuration()
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
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    async def review_token(self, token: str) -> User | None:
        """The user a bearer token belongs to, or None if the API server rejects it."""
        body = kubernetes.client.V1TokenReview(
            spec=kubernetes.client.V1TokenReviewSpec(token=token)
        )
        review = await self._call("TokenReview", self._authentication.create_token_review, body)
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

    async def review_access(self, user: User, attributes: Attributes) -> AccessDecision:
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
            "SubjectAccessReview", self._authorization.create_subject_access_review, body
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
                "ConfigMap read", self._core.read_namespaced_config_map, name, namespace
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
                "ConfigMap replace", self._core.replace_namespaced_config_map, name, namespace, body
            )
        except KubeAPIError as exc:
            if not (isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404):
                raise
            await self._call(
                "ConfigMap create", self._core.create_namespaced_config_map, namespace, body
            )

    async def _call(self, what: str, method: Callable[..., T], *args: Any) -> T:
        call = lambda: method(*args, _request_timeout=self._timeout)  # noqa: E731
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, call)
        except ApiException as exc:
            raise KubeAPIError(f"{what} failed: HTTP {exc.status} {exc.reason}") from exc
        except Exception as exc:  # urllib3, ssl and socket errors all mean "unreachable"
            raise KubeAPIError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
