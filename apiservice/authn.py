"""Authentication, in kube-apiserver's delegating order.

1. **Front proxy.** A client certificate that a *requestheader* CA signed directly, whose CN is
   among the allowed names: the user, groups, uid and extras are read from the X-Remote-*
   headers. Those headers are ignored on every other connection.
2. **Client certificate.** One signed by a *client* CA: CN is the user, each O a group.
3. **Bearer token.** Checked with a TokenReview against the Kubernetes API, cached.
4. Otherwise **401**: anonymous requests are not served.

Every authenticated user gets the group system:authenticated, as kube-apiserver adds it.

The TLS layer has already verified any presented certificate against the union of all trusted
CAs (see `certs.serving`); on Python 3.11 the verified chain is not exposed, so this module
attributes the leaf to the CA that signed it directly and re-checks its validity period on
every request (a keep-alive connection can outlive its certificate). Front-proxy
certificates issued by an intermediate that is not itself in the requestheader bundle are
therefore not recognised; kubeadm and managed control planes sign them directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
import urllib.parse
from collections.abc import Callable
from typing import Final

import cachetools
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDictProxy

from apiservice.errors import KubeAPIError, StatusError
from apiservice.identity import User
from apiservice.instrumentation import Instrumentation
from apiservice.kube import KubeAPI
from apiservice.trust import RequestHeaderTrust, Trust, TrustSource

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateVerdict:
    """What a client certificate is good for, under one `Trust` generation."""

    common_name: str
    organizations: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    front_proxy: bool
    client: bool
    problem: str = ""


class Authenticator:
    """Turns a request into a `User`, or raises a 401 `StatusError`."""

    def __init__(
        self,
        trust: TrustSource,
        kube: KubeAPI | None,
        *,
        token_ttl: float,
        instrumentation: Instrumentation,
        clock: Clock = _utcnow,
    ) -> None:
        self._trust = trust
        self._kube = kube
        self._metrics = instrumentation
        self._clock = clock
        self._verdicts: cachetools.LRUCache[tuple[bytes, int], CertificateVerdict]
        self._verdicts = cachetools.LRUCache(maxsize=1024)
        self._tokens: cachetools.TTLCache[bytes, User | None]
        self._tokens = cachetools.TTLCache(maxsize=4096, ttl=token_ttl)
        self._reviews_in_flight: dict[bytes, asyncio.Task[User | None]] = {}

    async def authenticate(self, request: web.Request) -> User:
        problems: list[str] = []
        der = _peer_certificate(request)
        if der is not None:
            user = self._from_certificate(der, request.headers, problems)
            if user is not None:
                self._metrics.authentications.labels(user.method, "success").inc()
                return user.with_authenticated_group()
        token = _bearer_token(request.headers.get("Authorization", ""))
        if token is not None:
            user = await self._from_token(token, problems)
            if user is not None:
                self._metrics.authentications.labels("token", "success").inc()
                return user.with_authenticated_group()
        method = "token" if token is not None else "client-certificate" if der else "none"
        self._metrics.authentications.labels(method, "failure").inc()
        logger.debug(
            "unauthenticated %s %s: %s",
            request.method,
            request.path,
            "; ".join(problems) or "no credentials",
        )
        raise StatusError(401, "Unauthorized")

    def verdict(self, der: bytes) -> CertificateVerdict:
        """What the certificate `der` is trusted for (cached per trust generation)."""
        trust = self._trust.current
        key = (der, trust.generation)
        found = self._verdicts.get(key)
        if found is None:
            found = _judge(der, trust)
            self._verdicts[key] = found
        return found

    def _from_certificate(
        self, der: bytes, headers: CIMultiDictProxy[str], problems: list[str]
    ) -> User | None:
        verdict = self.verdict(der)
        now = self._clock()
        if not verdict.not_before <= now <= verdict.not_after:
            problems.append(f"client certificate cn={verdict.common_name} is not valid now")
            return None
        if verdict.problem:
            problems.append(verdict.problem)
        requestheader = self._trust.current.requestheader
        if verdict.front_proxy and requestheader is not None:
            user = _from_headers(headers, requestheader)
            if user is not None:
                return user
            problems.append("front-proxy request without a username header")
        if verdict.client:
            return User(
                name=verdict.common_name,
                groups=verdict.organizations,
                method="client-certificate",
            )
        return None

    async def _from_token(self, token: str, problems: list[str]) -> User | None:
        if not token:
            problems.append("empty bearer token")
            return None
        if self._kube is None:
            problems.append("bearer token, but no Kubernetes API to review it")
            return None
        key = hashlib.sha256(token.encode()).digest()
        user = self._tokens.get(key, _MISSING)
        if user is _MISSING:
            user = await self._review_once(key, token)
        if user is None:
            problems.append("the bearer token was not accepted")
        return user

    async def _review_once(self, key: bytes, token: str) -> User | None:
        """One TokenReview per token at a time; concurrent requests share its answer."""
        review = self._reviews_in_flight.get(key)
        if review is None:
            review = asyncio.create_task(self._review(key, token))
            self._reviews_in_flight[key] = review
            review.add_done_callback(lambda _: self._reviews_in_flight.pop(key, None))
        return await asyncio.shield(review)

    async def _review(self, key: bytes, token: str) -> User | None:
        assert self._kube is not None
        try:
            user = await self._kube.review_token(token)
        except KubeAPIError as exc:
            logger.warning("cannot review a bearer token: %s", exc)
            return None  # not cached: the next request asks again
        self._tokens[key] = user
        return user


_MISSING: Final = User("")


def _judge(der: bytes, trust: Trust) -> CertificateVerdict:
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError:
        epoch = datetime.datetime.fromtimestamp(0, datetime.UTC)
        return CertificateVerdict("", (), epoch, epoch, False, False, "unparsable certificate")
    common_name = _attribute(leaf.subject, NameOID.COMMON_NAME)
    organizations = tuple(
        str(attribute.value)
        for attribute in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )
    for_clients = _allows_client_auth(leaf)
    problem = (
        "" if for_clients else f"certificate cn={common_name} is not for client authentication"
    )
    requestheader = trust.requestheader
    front_proxy = False
    if for_clients and requestheader is not None and _signed_by_any(leaf, requestheader.cas):
        if not requestheader.allowed_names or common_name in requestheader.allowed_names:
            front_proxy = True
        else:
            problem = f"front-proxy certificate cn={common_name} is not in the allowed names"
    client = for_clients and _signed_by_any(leaf, trust.client_cas)
    return CertificateVerdict(
        common_name,
        organizations,
        leaf.not_valid_before_utc,
        leaf.not_valid_after_utc,
        front_proxy,
        client,
        problem,
    )


def _signed_by_any(leaf: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> bool:
    for ca in cas:
        if leaf.issuer != ca.subject:
            continue
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _allows_client_auth(leaf: x509.Certificate) -> bool:
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return (
        ExtendedKeyUsageOID.CLIENT_AUTH in usages
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages
    )


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    attributes = name.get_attributes_for_oid(oid)
    return str(attributes[0].value) if attributes else ""


def _from_headers(headers: CIMultiDictProxy[str], trust: RequestHeaderTrust) -> User | None:
    """The identity the front proxy forwards, or None without a username."""
    name = _first(headers, trust.username_headers)
    if not name:
        return None
    groups = tuple(
        value for header in trust.group_headers for value in headers.getall(header, ()) if value
    )
    extra: dict[str, list[str]] = {}
    prefixes = tuple(prefix.lower() for prefix in trust.extra_prefixes)
    if prefixes:
        for header, value in headers.items():
            lowered = header.lower()
            for prefix in prefixes:
                if lowered.startswith(prefix):
                    key = urllib.parse.unquote(lowered[len(prefix) :])
                    extra.setdefault(key, []).append(value)
                    break
    return User(
        name=name,
        groups=groups,
        uid=_first(headers, trust.uid_headers),
        extra=tuple(sorted((key, tuple(values)) for key, values in extra.items())),
        method="front-proxy",
    )


def _first(headers: CIMultiDictProxy[str], names: tuple[str, ...]) -> str:
    for header in names:
        value = headers.get(header, "")
        if value:
            return value
    return ""


def _peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der


def _bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; '' if empty, None if absent."""
    parts = header.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]
