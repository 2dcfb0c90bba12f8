"""The listener's SSLContext, with certificates and trusted client CAs swapped on rotation.

A listening socket keeps the SSLContext it was created with. To rotate without restarting or
dropping the listener, the listener gets a fixed *front* context whose SNI callback (called by
OpenSSL for every ClientHello, with or without a server name) switches the connection to the
newest *current* context. A current context is never mutated: a rotation builds a complete new
one and swaps the reference, so trust anchors can be removed as well as added, and a bad file
(say, a key written before its certificate) leaves the previous context serving.

Client certificates are optional at the TLS layer (kubelet probes and bearer-token clients
present none), but a certificate that is presented must chain to one of the trusted client
CAs, or OpenSSL ends the handshake (with no trusted CA, every presented certificate fails).
Which CA vouched for it, and what that means, is the authenticator's business, not this
module's.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import errors, files


@dataclasses.dataclass(frozen=True)
class ServingMaterial:
    """What one current context was built from, for logs and metrics."""

    cert_file: Path
    key_file: Path
    not_after: datetime.datetime
    digest: str
    cert_pem: bytes = dataclasses.field(repr=False)
    """The validated pair itself, for other listeners that follow this one (KEDA's gRPC)."""
    key_pem: bytes = dataclasses.field(repr=False)


class ServingContext:
    """TLS for a listener: serving certificate from files, client CAs from the caller.

    `reload_if_changed` and `set_client_cas` do blocking file I/O and are meant to run in a
    worker thread; the swap they end with is a single reference assignment, safe to race with
    handshakes on the event loop.
    """

    def __init__(self, cert_file: Path, key_file: Path, client_ca_pem: bytes = b"") -> None:
        self._cert_file = cert_file
        self._key_file = key_file
        self._client_ca_pem = client_ca_pem
        self._current, self.material = self._build()
        self._front = self._build()[0]
        self._front.sni_callback = self._select

    @property
    def listener(self) -> ssl.SSLContext:
        """The context to hand to the listening socket, once."""
        return self._front

    @property
    def current(self) -> ssl.SSLContext:
        return self._current

    def reload_if_changed(self) -> bool:
        """Rebuild if the files' contents changed; raises `TLSError` and keeps the old context
        if the new material is unusable."""
        if _digest(self._cert_file, self._key_file) == self.material.digest:
            return False
        self._current, self.material = self._build()
        return True

    def set_client_cas(self, pem: bytes) -> None:
        """Trust exactly these client CAs for new handshakes (may be empty)."""
        if pem == self._client_ca_pem:
            return
        previous = self._client_ca_pem
        self._client_ca_pem = pem
        try:
            self._current, self.material = self._build()
        except errors.TLSError:
            self._client_ca_pem = previous
            raise

    def _select(
        self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        connection.context = self._current

    def _build(self) -> tuple[ssl.SSLContext, ServingMaterial]:
        cert_pem = files.read_bytes(self._cert_file)
        key_pem = files.read_bytes(self._key_file)
        leaf = files.parse_certificates(cert_pem, str(self._cert_file))[0]
        context = server_context(self._cert_file, self._key_file, self._client_ca_pem)
        # The files are read twice (here and by OpenSSL); if they change in between, the
        # digest no longer matches what was loaded and the next poll loads them again.
        digest = _digest_of(cert_pem, key_pem)
        return context, ServingMaterial(
            self._cert_file, self._key_file, leaf.not_valid_after_utc, digest, cert_pem, key_pem
        )


def server_context(cert_file: Path, key_file: Path, client_ca_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.2+ server context; client certificates optional but verified when presented."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    # The aggregator's Go transport offers h2 first; this server speaks HTTP/1.1 keep-alive.
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise errors.KeyMismatchError(
            f"{key_file} does not match {cert_file}, or one of them is not PEM ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise errors.CertificateFileError(f"cannot read {cert_file} or {key_file}") from exc
    # Always request a certificate: the SNI switch changes the context's trust store but not
    # the verify mode a connection started with, so the mode must be the same everywhere.
    context.verify_mode = ssl.CERT_OPTIONAL
    if client_ca_pem.strip():
        # Validate the bundle ourselves first, for an error that names the problem.
        files.parse_certificates(client_ca_pem, "client CA bundle")
        context.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
    return context


def bundle(certificates: list[x509.Certificate]) -> bytes:
    """A PEM bundle of distinct certificates, in order."""
    seen: dict[bytes, None] = {}
    for certificate in certificates:
        seen.setdefault(certificate.public_bytes(serialization.Encoding.PEM), None)
    return b"".join(seen)


def _digest(cert_file: Path, key_file: Path) -> str:
    return _digest_of(files.read_bytes(cert_file), files.read_bytes(key_file))


def _digest_of(cert_pem: bytes, key_pem: bytes) -> str:
    return hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()
