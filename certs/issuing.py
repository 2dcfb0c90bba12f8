"""Issue a CA, serving certificates and client certificates.

Keys are ECDSA P-256: every Kubernetes component and every TLS stack the adapter meets accepts
them, and handshakes cost a fraction of RSA's. Validity starts five minutes in the past so that
a peer whose clock lags a little does not reject a certificate minted a second ago.

This module only builds objects in memory; `certs.files` writes them. It must not read flags
or know where files live.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLOCK_SKEW = datetime.timedelta(minutes=5)
"""How far back `not_valid_before` is set, for peers whose clocks lag."""


@dataclasses.dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names under which a Service is dialled; the aggregator uses ``<svc>.<ns>.svc``."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def new_ca(
    common_name: str,
    *,
    valid_for: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _start(now)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CLOCK_SKEW + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def issue_serving(
    ca: Issued,
    names: Iterable[str],
    *,
    valid_for: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> Issued:
    """A server certificate for DNS names and IP addresses (each given as text).

    The first name becomes the subject CN; clients check only the SANs.
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    sans: list[x509.GeneralName] = []
    for entry in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            sans.append(x509.DNSName(entry))
    return _leaf(
        ca,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        valid_for=valid_for,
        now=now,
        sans=sans,
    )


def issue_client(
    ca: Issued,
    user: str,
    groups: Sequence[str] = (),
    *,
    valid_for: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> Issued:
    """A client certificate as Kubernetes reads one: CN is the user, each O a group."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return _leaf(
        ca,
        x509.Name(attributes),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        valid_for=valid_for,
        now=now,
        sans=[],
    )


def _leaf(
    ca: Issued,
    subject: x509.Name,
    purpose: x509.ObjectIdentifier,
    *,
    valid_for: datetime.timedelta,
    now: datetime.datetime | None,
    sans: list[x509.GeneralName],
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start = _start(now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CLOCK_SKEW + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _start(now: datetime.datetime | None) -> datetime.datetime:
    return (now or datetime.datetime.now(datetime.UTC)) - CLOCK_SKEW


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
