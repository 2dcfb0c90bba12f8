"""Authentication, in kube-apiserver's delegating order.

1. **Front proxy.** A client certificate that a *requestheader* CA signed directly, whose CN is
   among the allowed names: the user, groups, uid and extras are read from the X-Remote-*
   headers. Those headers are ignored on every other connection.
2. **Client certificate.** One signed by a *client* CA: CN is the user, each O a group.
3. **Bearer token.** Checked with a TokenReview against the Kubernetes API, cached.
4. Otherwise **401**: anonymous requests are not served.

Certificates never wait for the Kubernetes API, and neither does a token with a cached
answer. Accepted and rejected tokens are cached apart, so made-up tokens cannot push a good
one out; a good token in use is reviewed again before its answer expires, in the background,
and tokens that authenticated lately are reviewed in their own lane (`apiservice.kube`). A
review that cannot be made is a **429** (too many waiting: refused at once) or a **503** (the
API failed or missed the deadline; remembered for `ERROR_TTL` per token), never a 500 and
never a 401 that would tell a good token's owner it is bad.

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
import time
import urllib.parse
from collections.abc import Callable

import cachetools
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDictProxy

from apiservice.errors import KubeAPIError, StatusError
from apiservice.identity import User
from apiservice.instrumentation import Instrumentation
from apiservice.kube import (
    ERROR_TTL,
    FAILED as _FAILED,
    REFUSED as _REFUSED,
    KubeAPI,
    TroubleLog,
    unreviewed,
    was_refused,
)
from apiservice.settings import AuthenticationSettings
from apiservice.trust import RequestHeaderTrust, Trust, TrustSource

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]

TOKEN_CACHE_SIZE = 4096
"""Tokens remembered per kind of answer (accepted, rejected, failed, known)."""

KNOWN_TTL = 600.0
"""Seconds a token that authenticated keeps its place in the renewal lane: longer than any
client's polling interval (the HPA's is 15 s), short against a token's lifetime."""


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
    """Turns a request into a `User`, or raises a `StatusError`: 401, or 429 or 503 when a
    bearer token cannot be reviewed now."""

    def __init__(
        self,
        trust: TrustSource,
        kube: KubeAPI | None,
        *,
        token_ttl: float,
        instrumentation: Instrumentation,
        clock: Clock = _utcnow,
        review_timeout: float = AuthenticationSettings.token_webhook_timeout,
    ) -> None:
        self._trust = trust
        self._kube = kube
        self._metrics = instrumentation
        self._clock = clock
        self._verdicts: cachetools.LRUCache[tuple[bytes, int], CertificateVerdict]
        self._verdicts = cachetools.LRUCache(maxsize=1024)
        self._token_ttl = token_ttl
        self._review_timeout = review_timeout
        self._accepted: cachetools.TTLCache[bytes, _Accepted]
        self._accepted = cachetools.TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=token_ttl)
        self._rejected: cachetools.TTLCache[bytes, bool]
        self._rejected = cachetools.TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=token_ttl)
        self._failed: cachetools.TTLCache[bytes, str]
        self._failed = cachetools.TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=ERROR_TTL)
        self._known: cachetools.TTLCache[bytes, bool]
        self._known = cachetools.TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=KNOWN_TTL)
        self._reviews_in_flight: dict[bytes, asyncio.Task[_Outcome]] = {}
        self._trouble = TroubleLog(logger, logging.WARNING)

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
            try:
                user = await self._from_token(token, problems)
            except StatusError:
                self._metrics.authentications.labels("token", "error").inc()
                raise
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
        """The token's user, None if it is not accepted; a `StatusError` (429 or 503) if it
        cannot be reviewed now."""
        if not token:
            problems.append("empty bearer token")
            return None
        if self._kube is None:
            problems.append("bearer token, but no Kubernetes API to review it")
            return None
        key = hashlib.sha256(token.encode()).digest()
        accepted = self._accepted.get(key)
        if accepted is not None:
            if time.monotonic() - accepted.reviewed_at >= self._token_ttl / 2:
                _ = self._review_once(key, token)  # renewed ahead of expiry; no waiting
            return accepted.user
        if key in self._rejected:
            outcome: _Outcome = None
        else:
            outcome = self._failed.get(key) or await asyncio.shield(self._review_once(key, token))
        if isinstance(outcome, str):
            raise unreviewed(
                outcome,
                "bearer tokens are not reviewed faster than the Kubernetes API answers",
                "the bearer token could not be reviewed",
            )
        if outcome is None:
            problems.append("the bearer token was not accepted")
        return outcome

    def _review_once(self, key: bytes, token: str) -> asyncio.Task[_Outcome]:
        """One TokenReview per token at a time; concurrent requests share its answer."""
        review = self._reviews_in_flight.get(key)
        if review is None:
            review = asyncio.create_task(self._review(key, token))
            self._reviews_in_flight[key] = review
            review.add_done_callback(lambda _: self._reviews_in_flight.pop(key, None))
        return review

    async def _review(self, key: bytes, token: str) -> _Outcome:
        assert self._kube is not None
        try:
            user = await self._kube.review_token(
                token, deadline=self._review_timeout, known=key in self._known
            )
        except KubeAPIError as exc:
            if was_refused(exc):
                self._trouble(_REFUSED, f"bearer tokens answered 429: {exc}")
                return _REFUSED
            self._trouble(_FAILED, f"cannot review a bearer token: {exc}")
            self._failed[key] = _FAILED
            return _FAILED
        self._failed.pop(key, None)
        if user is None:
            self._rejected[key] = True
            self._accepted.pop(key, None)
            self._known.pop(key, None)
            return None
        self._accepted[key] = _Accepted(user, time.monotonic())
        self._known[key] = True
        return user


@dataclasses.dataclass(frozen=True, slots=True)
class _Accepted:
    user: User
    reviewed_at: float
    """`time.monotonic()` of the review."""


_Outcome = User | None | str
"""What a review gives: the user, None (rejected), or why there is no answer."""


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
