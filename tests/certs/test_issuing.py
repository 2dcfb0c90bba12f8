"""What `certs` issues and writes: names, purposes, validity, and file permissions."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import errors, files, issuing

DAY = datetime.timedelta(days=1)


def test_serving_certificate_names_the_service_and_is_for_servers(tmp_path: Path) -> None:
    ca = issuing.new_ca("ca", valid_for=DAY)
    names = [*issuing.service_dns_names("adapter", "monitoring"), "10.0.0.7"]
    leaf = issuing.issue_serving(ca, names, valid_for=DAY).certificate
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "adapter.monitoring.svc" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    leaf.verify_directly_issued_by(ca.certificate)


def test_client_certificate_carries_user_and_groups_as_kubernetes_reads_them() -> None:
    ca = issuing.new_ca("ca", valid_for=DAY)
    leaf = issuing.issue_client(ca, "jane", ["ops", "system:masters"], valid_for=DAY).certificate
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "jane"
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "ops",
        "system:masters",
    ]
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]


def test_ca_signs_leaves_only_and_validity_allows_for_clock_skew() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    ca = issuing.new_ca("ca", valid_for=DAY, now=now).certificate
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert ca.not_valid_before_utc == now - issuing.CLOCK_SKEW
    assert ca.not_valid_after_utc == now + DAY


def test_keys_are_private_from_the_first_byte_and_files_replace_atomically(tmp_path: Path) -> None:
    ca = issuing.new_ca("ca", valid_for=DAY)
    files.write_issued(ca, tmp_path / "ca.crt", tmp_path / "ca.key")
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.crt").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key"]  # no temporaries left
    again = files.read_issued(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert again.certificate == ca.certificate


def test_reading_mismatched_or_broken_files_names_the_file(tmp_path: Path) -> None:
    one, two = (issuing.new_ca(name, valid_for=DAY) for name in ("one", "two"))
    files.write_pem(tmp_path / "one.crt", one.cert_pem(), private=False)
    files.write_pem(tmp_path / "two.key", two.key_pem(), private=True)
    with pytest.raises(errors.KeyMismatchError, match="two.key is not the key of"):
        files.read_issued(tmp_path / "one.crt", tmp_path / "two.key")
    (tmp_path / "junk.crt").write_text("not a certificate")
    with pytest.raises(errors.CertificateFileError, match="junk.crt: not a PEM certificate bundle"):
        files.read_certificates(tmp_path / "junk.crt")
    with pytest.raises(errors.CertificateFileError, match="absent.crt: cannot read"):
        files.read_certificates(tmp_path / "absent.crt")
