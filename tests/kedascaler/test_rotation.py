"""KEDA's gRPC listener follows the serving certificate's rotation: a new connection gets the
pair the HTTPS listener adopted, and a half-written pair (new key, old cert) never reaches it."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from apiservice.server import Server
from apiservice.settings import KedaSettings, ProviderSettings
from certs import errors as tls_errors, files, issuing
from kedascaler.externalscaler import externalscaler_pb2 as pb, externalscaler_pb2_grpc as rpc
from tests.fakes import FakeHistorySource
from tests.harness import settings_for
from tests.pki import NAMESPACE, PKI, SERVICE
from tests.samples import WEB_TARGET

NOW = 1_790_000_000.0


def is_active(port: int, ca: bytes, pki: PKI) -> bool:
    """One IsActive call on a fresh channel (so a fresh handshake) trusting only `ca`."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=pki.admin.key.read_bytes(),
        certificate_chain=pki.admin.cert.read_bytes(),
    )
    ref = pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata={"target": "web"})
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        return bool(rpc.ExternalScalerStub(channel).IsActive(ref, timeout=5).result)


def test_grpc_follows_the_serving_certificate_rotation(
    make_server: Callable[..., Server], pki: PKI, tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.serving.cert, cert)
    shutil.copy(pki.serving.key, key)
    config = tmp_path / "config.yaml"
    config.write_text(WEB_TARGET)
    settings = settings_for(pki, None, tmp_path / "unused.yaml")
    settings = dataclasses.replace(
        settings,
        serving=dataclasses.replace(
            settings.serving,
            tls_cert_file=cert,
            tls_private_key_file=key,
            tls_reload_interval=3600,  # the test reloads by hand, at the moments it chooses
        ),
        provider=ProviderSettings(config_file=config, refresh_interval=300),
        keda=KedaSettings(grpc_port=0, grpc_bind_address="127.0.0.1"),
    )
    source = FakeHistorySource(
        signals={"web_requests": lambda t: 200 + 150 * np.sin(2 * np.pi * t / 86400)}, now=NOW
    )
    server = make_server(settings, source=source, clock=lambda: NOW)
    assert server.refresher is not None
    assert server.grpc_port is not None
    began = time.monotonic()
    while server.refresher.last_report is None:
        assert time.monotonic() - began < 30
        time.sleep(0.05)
    old_ca = pki.path("serving-ca").read_bytes()
    new_ca = issuing.new_ca("serving-ca-2", valid_for=datetime.timedelta(days=1))
    names = ["localhost", "127.0.0.1", *issuing.service_dns_names(SERVICE, NAMESPACE)]
    new = issuing.issue_serving(new_ca, names, valid_for=datetime.timedelta(days=1))
    assert is_active(server.grpc_port, old_ca, pki)

    # Half written: the new key beside the old cert. The listener refuses it; gRPC keeps the old.
    staged = tmp_path / "staged"
    staged.mkdir()
    files.write_issued(new, staged / "tls.crt", staged / "tls.key")
    shutil.copy(staged / "tls.key", key)
    with pytest.raises(tls_errors.TLSError):
        server.tls.reload_if_changed()
    assert is_active(server.grpc_port, old_ca, pki)

    shutil.copy(staged / "tls.crt", cert)
    assert server.tls.reload_if_changed()
    assert is_active(server.grpc_port, new_ca.cert_pem(), pki)
    with pytest.raises(grpc.RpcError) as caught:
        is_active(server.grpc_port, old_ca, pki)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
