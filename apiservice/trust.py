"""Which client certificates to believe, and for what: kept current without a restart.

Two kinds of client certificate reach this server:

- the **front proxy's** (kube-apiserver's ``--proxy-client-cert-file``), signed by the
  *requestheader* CA: only with it are the X-Remote-User/Group/Extra headers trusted;
- a **user's own**, signed by the *client* CA: CN is the user, O the groups.

Each comes from the flag's file if one is given, otherwise from ConfigMap
kube-system/extension-apiserver-authentication, which kube-apiserver publishes from its own
flags. Both are re-read every refresh interval, so a rotated front-proxy CA is trusted (and a
removed one distrusted) within that interval. A refresh that fails keeps the last good trust.

This module decides nothing about requests; `apiservice.authn` does, with what it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from apiservice.errors import KubeAPIError, TrustError
from apiservice.kube import KubeAPI
from apiservice.settings import AuthenticationSettings
from certs import errors as tls_errors, files, serving

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RequestHeaderTrust:
    """How to recognise the front proxy and read the identity it forwards."""

    cas: tuple[x509.Certificate, ...]
    allowed_names: frozenset[str]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_prefixes: tuple[str, ...]
    uid_headers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Trust:
    """One consistent view of every trusted client CA."""

    client_cas: tuple[x509.Certificate, ...] = ()
    requestheader: RequestHeaderTrust | None = None
    generation: int = 0
    """Bumped on every change, so that caches keyed on it forget old verdicts."""

    def ca_bundle(self) -> bytes:
        """Every CA a client certificate may chain to, for the TLS layer."""
        front = self.requestheader.cas if self.requestheader else ()
        return serving.bundle([*self.client_cas, *front])

    def same_as(self, other: Trust) -> bool:
        return dataclasses.replace(self, generation=0) == dataclasses.replace(other, generation=0)


class TrustSource:
    """Loads `Trust` from files and the ConfigMap; `current` is always the last good one."""

    def __init__(
        self,
        settings: AuthenticationSettings,
        kube: KubeAPI | None,
        on_change: Callable[[Trust], None] = lambda trust: None,
    ) -> None:
        self._settings = settings
        self._kube = kube
        self._on_change = on_change
        self.current = Trust()

    @property
    def needs_lookup(self) -> bool:
        wanted = (
            self._settings.client_ca_file is None
            or self._settings.requestheader_client_ca_file is None
        )
        return wanted and not self._settings.skip_lookup and self._kube is not None

    async def refresh(self) -> bool:
        """Load everything again; True if anything changed. Raises on failure (the caller
        decides whether that is fatal, at start-up, or a warning, later)."""
        data: dict[str, str] = {}
        if self.needs_lookup:
            assert self._kube is not None
            found = await self._kube.read_authentication_configmap()
            if found is None:
                logger.warning(
                    "ConfigMap kube-system/extension-apiserver-authentication does not exist; "
                    "only CA files given by flags are trusted"
                )
            data = found or {}
        trust = await asyncio.to_thread(self._load, data)
        if trust.same_as(self.current):
            return False
        trust = dataclasses.replace(trust, generation=self.current.generation + 1)
        await asyncio.to_thread(self._on_change, trust)
        self.current = trust
        logger.info(
            "trusting %d client CA(s) and %d front-proxy CA(s) (allowed names: %s)",
            len(trust.client_cas),
            len(trust.requestheader.cas) if trust.requestheader else 0,
            ", ".join(sorted(trust.requestheader.allowed_names))
            if trust.requestheader and trust.requestheader.allowed_names
            else "any",
        )
        return True

    def _load(self, data: dict[str, str]) -> Trust:
        settings = self._settings
        client_cas = _cas(settings.client_ca_file, data.get("client-ca-file"), "client-ca-file")
        if settings.requestheader_client_ca_file is not None:
            requestheader = RequestHeaderTrust(
                cas=tuple(files.read_certificates(settings.requestheader_client_ca_file)),
                allowed_names=frozenset(settings.requestheader_allowed_names),
                username_headers=settings.requestheader_username_headers,
                group_headers=settings.requestheader_group_headers,
                extra_prefixes=settings.requestheader_extra_headers_prefix,
                uid_headers=settings.requestheader_uid_headers,
            )
        elif data.get("requestheader-client-ca-file", "").strip():
            requestheader = RequestHeaderTrust(
                cas=_cas(
                    None, data["requestheader-client-ca-file"], "requestheader-client-ca-file"
                ),
                allowed_names=frozenset(_strings(data, "requestheader-allowed-names")),
                username_headers=tuple(_strings(data, "requestheader-username-headers")),
                group_headers=tuple(_strings(data, "requestheader-group-headers")),
                extra_prefixes=tuple(_strings(data, "requestheader-extra-headers-prefix")),
                uid_headers=tuple(_strings(data, "requestheader-uid-headers")),
            )
        else:
            requestheader = None
        return Trust(client_cas=client_cas, requestheader=requestheader)


def _cas(path: Path | None, pem: str | None, key: str) -> tuple[x509.Certificate, ...]:
    if path is not None:
        return tuple(files.read_certificates(path))
    if pem and pem.strip():
        return tuple(files.parse_certificates(pem.encode(), f"ConfigMap key {key}"))
    return ()


def _strings(data: dict[str, str], key: str) -> list[str]:
    """A ConfigMap value that kube-apiserver wrote as a JSON list of strings."""
    raw = data.get(key, "").strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TrustError(f"ConfigMap key {key} is not a JSON list") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TrustError(f"ConfigMap key {key} is not a list of strings")
    return value


REFRESH_ERRORS = (KubeAPIError, TrustError, tls_errors.TLSError)
"""What a refresh can fail with and leave the last good trust in place."""
