"""Kapacity-compatible results written to a real kube-apiserver: `<target>-result` ConfigMaps
that users of the seed's flow read with `kubectl get cm -o yaml`."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from apiservice.server import Server
from apiservice.settings import ProviderSettings
from tests.e2e.cluster import ControlPlane
from tests.fakes import FakeHistorySource
from tests.harness import settings_for
from tests.pki import PKI

NOW = 1_790_000_000.0
CONFIG = """
forecasts:
- name: web
  namespace: shop
  traffic: {name: requests, query: web_requests}
  capacity: {perPod: 50}
  maxReplicas: 20
  resultConfigMap: true
"""


def test_result_configmap_has_the_seed_format(
    make_server: Callable[..., Server], pki: PKI, tmp_path: Path, cluster: ControlPlane
) -> None:
    cluster.kubectl("create", "namespace", "shop", check=False)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    source = FakeHistorySource(
        signals={"web_requests": lambda t: 200 + 150 * np.sin(2 * np.pi * t / 86400)}, now=NOW
    )
    settings = settings_for(pki, cluster.admin_kubeconfig, tmp_path / "unused.yaml")
    settings = dataclasses.replace(
        settings, provider=ProviderSettings(config_file=config, refresh_interval=300)
    )
    server = make_server(settings, source=source, clock=lambda: NOW)
    assert server.refresher is not None
    began = time.monotonic()
    while (
        cluster.kubectl("-n", "shop", "get", "configmap", "web-result", check=False).returncode != 0
    ):
        assert time.monotonic() - began < 30, "no result ConfigMap"
        time.sleep(0.2)
    data = json.loads(
        cluster.kubectl("-n", "shop", "get", "configmap", "web-result", "-o", "json").stdout
    )["data"]
    assert data["type"] == "TimeSeries"
    assert data["expireTime"].endswith("Z")
    series = json.loads(data["timeSeries"])
    stamps = sorted(int(key) for key in series)
    assert len(stamps) == 48
    assert stamps[0] > NOW
    assert all(b - a == 300 for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(isinstance(v, int) and 1 <= v <= 20 for v in series.values())
