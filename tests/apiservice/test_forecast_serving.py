"""The server composed with the forecasting pipeline: values over HTTPS and /metrics gauges.

(Prometheus is the data-driven stand-in here; tests/integration has the real one.)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from apiservice.server import Server
from apiservice.settings import ProviderSettings
from tests.fakes import FakeHistorySource
from tests.harness import Client, settings_for
from tests.pki import PKI
from tests.samples import WEB_TARGET

NOW = 1_790_000_000.0
CONFIG = WEB_TARGET


def test_predictions_and_per_target_gauges(
    make_server: Callable[..., Server], pki: PKI, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    source = FakeHistorySource(
        signals={"web_requests": lambda t: 200 + 150 * np.sin(2 * np.pi * t / 86400)}, now=NOW
    )
    settings = settings_for(pki, None, tmp_path / "unused.yaml")
    settings = dataclasses.replace(
        settings, provider=ProviderSettings(config_file=config, refresh_interval=300)
    )
    server = make_server(settings, source=source, clock=lambda: NOW)
    assert server.refresher is not None
    began = time.monotonic()
    while server.refresher.last_report is None:
        assert time.monotonic() - began < 30
        time.sleep(0.05)
    with Client(server.port, pki.path("serving-ca"), pki.admin) as client:
        answer = client.get(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/predicted_replicas?labelSelector=target%3Dweb"
        )
        assert answer.status == 200
        (item,) = answer.json()["items"]
        assert item["metricLabels"] == {
            "target": "web",
            "workload": "web",
            "workload_kind": "Deployment",
        }
        assert item["window"] == 900
        discovery = client.get("/apis/external.metrics.k8s.io/v1beta1").json()
        assert [r["name"] for r in discovery["resources"]] == [
            "predicted_replicas",
            "predicted_requests",
        ]
        text = client.get("/metrics").body.decode()
    replicas = int(item["value"])
    gauge = 'predictive_metrics_adapter_predicted_replicas{namespace="shop",target="web"}'
    assert f"{gauge} {float(replicas)}" in text
    for line in (
        'predictive_metrics_adapter_predicted_load{namespace="shop",signal="requests",target="web"}',
        'predictive_metrics_adapter_actual_load{namespace="shop",signal="requests",target="web"}',
        'predictive_metrics_adapter_refresh_failing{namespace="shop",target="web"} 0.0',
        "predictive_metrics_adapter_prediction_age_seconds"
        '{metric="predicted_replicas",namespace="shop",target="web"} 0.0',
        "predictive_metrics_adapter_refresh_queries 1.0",
        # A capacity target's sizing: the manual quantile at full use, no reactive part, its
        # bound calibrated from the first cycle (the backfill logged 256 past origins).
        'predictive_metrics_adapter_setting_quantile{namespace="shop",target="web"} 0.9',
        "predictive_metrics_adapter_setting_forecast_utilisation"
        '{namespace="shop",target="web"} 1.0',
        'predictive_metrics_adapter_bound_calibrated{namespace="shop",target="web"} 1.0',
        'predictive_metrics_adapter_peak_log_origins{namespace="shop",target="web"} 257.0',
    ):
        assert line in text, line
    assert "setting_reactive_utilisation{" not in text  # no reactive part
    assert "objective_met{" not in text  # no objective
