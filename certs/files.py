"""PEM files: written atomically with safe permissions, read back with clear errors.

A private key is created with mode 0600 before a single byte is written, so it is never
readable by others, not even for an instant. Every write goes to a temporary file in the same
directory and is renamed over the target, so a reader (this server's reload loop, or another
process) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs import errors, issuing

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_pem(path: Path, data: bytes, *, private: bool) -> None:
    """Write `data` to `path` atomically; keys get mode 0600, certificates 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, PRIVATE_MODE if private else PUBLIC_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_issued(issued: issuing.Issued, cert_path: Path, key_path: Path) -> None:
    """Write the key first, so that a reader never sees a certificate without its key."""
    write_pem(key_path, issued.key_pem(), private=True)
    write_pem(cert_path, issued.cert_pem(), private=False)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise errors.CertificateFileError(f"{path}: cannot read: {exc.strerror}") from exc


def parse_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; an empty or malformed bundle is an error."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise errors.CertificateFileError(f"{source}: not a PEM certificate bundle") from exc
    return certificates


def read_certificates(path: Path) -> list[x509.Certificate]:
    return parse_certificates(read_bytes(path), str(path))


def read_issued(cert_path: Path, key_path: Path) -> issuing.Issued:
    """Load a certificate and its EC key, checking that they belong together."""
    certificate = read_certificates(cert_path)[0]
    try:
        key = serialization.load_pem_private_key(read_bytes(key_path), password=None)
    except (ValueError, TypeError) as exc:
        raise errors.CertificateFileError(f"{key_path}: not an unencrypted PEM key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.CertificateFileError(f"{key_path}: expected an EC key from this tool")
    if key.public_key() != certificate.public_key():
        raise errors.KeyMismatchError(f"{key_path} is not the key of {cert_path}")
    return issuing.Issued(certificate, key)
