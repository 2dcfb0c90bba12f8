"""The server's own Prometheus metrics, exposed on /metrics.

One registry per server (not the process-global default), so that several servers in one
test process do not collide. Label values are bounded: routes are route templates, never raw
paths; users are never labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import adapter

PREFIX = "predictive_metrics_adapter"


class Instrumentation:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        self.requests = Counter(
            f"{PREFIX}_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.authentications = Counter(
            f"{PREFIX}_authentication_total",
            "Authentication outcomes by method (front-proxy, client-certificate, token, none).",
            ["method", "result"],
            registry=self.registry,
        )
        self.authorizations = Counter(
            f"{PREFIX}_authorization_total",
            "Authorization decisions (allowed, denied, error) by where they came from "
            "(always-allow, cache, review, no-authorizer).",
            ["decision", "source"],
            registry=self.registry,
        )
        self.value_age = Histogram(
            f"{PREFIX}_served_value_age_seconds",
            "Age of each metric value when it was served (now minus its timestamp).",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
        self.serving_cert_expiry = Gauge(
            f"{PREFIX}_serving_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (unix seconds).",
            registry=self.registry,
        )
        self.connections = Gauge(
            f"{PREFIX}_https_connections",
            "HTTPS connections open, those in the TLS handshake included.",
            registry=self.registry,
        )
        self.connections_refused = Counter(
            f"{PREFIX}_https_connections_refused_total",
            "Connections closed on arrival because --max-connections were open.",
            registry=self.registry,
        )
        self.connection_timeouts = Counter(
            f"{PREFIX}_https_connection_timeouts_total",
            "Connections closed because a client was too slow, by what it was slow to send.",
            ["phase"],
            registry=self.registry,
        )
        self.malformed_requests = Counter(
            f"{PREFIX}_http_malformed_requests_total",
            "Requests the HTTP parser rejected (never routed), by status code.",
            ["code"],
            registry=self.registry,
        )
        self.reload_failures = Counter(
            f"{PREFIX}_reload_failures_total",
            "Failed reloads that left the previous material in use, by what was reloaded.",
            ["what"],
            registry=self.registry,
        )

    def watch(self, refresher: adapter.Refresher, store: adapter.PredictionStore) -> None:
        """Expose per-target forecasting state, read from the refresher at scrape time."""
        self.registry.register(_TargetCollector(refresher, store))

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _TargetCollector(Collector):
    """Gauges per forecast target: predictions, actuals, realised error, age, failures, and
    for a capacity target how its count is sized (the setting, whether its bound is
    calibrated, and with an objective what the tuning expects of it)."""

    def __init__(self, refresher: adapter.Refresher, store: adapter.PredictionStore) -> None:
        self._refresher = refresher
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        target = ["namespace", "target"]
        signal = [*target, "signal"]

        def family(name: str, text: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=labels)

        replicas = family("predicted_replicas", "Desired replicas last published.", target)
        predicted = family("predicted_load", "Forecast load at now + lead time.", signal)
        actual = family("actual_load", "Newest observed load.", signal)
        error = family(
            "forecast_error_ratio",
            "|actual - median forecast| / |actual| for the newest step that had been forecast.",
            signal,
        )
        success = family(
            "last_refresh_success_timestamp_seconds", "Last successful refresh.", target
        )
        failing = family("refresh_failing", "1 if the last refresh of the target failed.", target)
        for status in self._refresher.status():
            key = [status.namespace, status.name]
            _add(replicas, key, status.predicted_replicas)
            _add(success, key, status.last_success)
            failing.add_metric(key, 1.0 if status.last_error else 0.0)
            for name, value in status.predicted_load.items():
                _add(predicted, [*key, name], value)
            for name, value in status.actual_load.items():
                _add(actual, [*key, name], value)
            for name, value in status.forecast_error.items():
                _add(error, [*key, name], value)
        age = family(
            "prediction_age_seconds",
            "Age of each served prediction.",
            ["namespace", "target", "metric"],
        )
        for ((namespace, name), metric), seconds in self._store.ages().items():
            _add(age, [namespace, name, metric], seconds)
        yield from (replicas, predicted, actual, error, success, failing, age)
        yield from self._sizing(family, target)
        report = self._refresher.last_report
        if report is not None:
            cycle = family("refresh_cycle_seconds", "Duration of the last refresh cycle.", [])
            cycle.add_metric([], report.seconds)
            queries = family("refresh_queries", "Queries sent in the last refresh cycle.", [])
            queries.add_metric([], report.queries)
            yield from (cycle, queries)

    def _sizing(
        self, family: Callable[[str, str, list[str]], GaugeMetricFamily], target: list[str]
    ) -> Iterator[GaugeMetricFamily]:
        gauges = {
            "quantile": family(
                "setting_quantile",
                "Forecast quantile the served count of a capacity target is sized at.",
                target,
            ),
            "forecast": family(
                "setting_forecast_utilisation",
                "Share of a pod's capacity the forecast part of the served count sizes for.",
                target,
            ),
            "reactive": family(
                "setting_reactive_utilisation",
                "Utilisation the last value seen is sized at in the served count (absent: "
                "no reactive part).",
                target,
            ),
            "calibrated": family(
                "bound_calibrated",
                "1 if the served count's bound is calibrated on the target's recent errors, 0 "
                "while the model's own quantile is used.",
                target,
            ),
            "origins": family(
                "peak_log_origins",
                "Recent origins whose lead-window median forecast is known (calibration and "
                "tuning read them).",
                target,
            ),
            "objective": family(
                "objective_max_time_above_capacity_ratio",
                "Share of the time the target's objective allows above capacity.",
                target,
            ),
            "headroom": family(
                "objective_headroom_ratio",
                "Share of capacity the target's objective keeps free (the time above the rest "
                "counts against it).",
                target,
            ),
            "tuned": family(
                "setting_tuned",
                "1 if the setting was tuned for the objective, 0 while the manual quantile "
                "applies (too little history).",
                target,
            ),
            "met": family(
                "objective_met",
                "1 if the tuned setting kept the objective over the history it was tuned on.",
                target,
            ),
            "above": family(
                "expected_time_above_capacity_ratio",
                "Share of the time the tuned setting was above capacity in its replay.",
                target,
            ),
            "cost": family(
                "expected_cost_ratio",
                "Pod-hours of the tuned setting over those of a reactive HPA at 70 % in its "
                "replay.",
                target,
            ),
        }
        for status in self._refresher.status():
            key = [status.namespace, status.name]
            _add(gauges["origins"], key, status.peak_origins)
            sizing = status.sizing
            if sizing is None:
                continue
            _add(gauges["quantile"], key, sizing.quantile)
            _add(gauges["forecast"], key, sizing.forecast_utilisation)
            if sizing.reactive_utilisation is not None:
                _add(gauges["reactive"], key, sizing.reactive_utilisation)
            _add(gauges["calibrated"], key, float(sizing.calibrated))
            if sizing.objective is None:
                continue
            _add(gauges["objective"], key, sizing.objective)
            _add(gauges["headroom"], key, sizing.headroom)
            _add(gauges["tuned"], key, float(sizing.tuned))
            if sizing.met is not None:
                _add(gauges["met"], key, float(sizing.met))
                _add(gauges["above"], key, sizing.time_above_capacity)
                _add(gauges["cost"], key, sizing.cost)
        yield from gauges.values()


def _add(family: GaugeMetricFamily, labels: list[str], value: float) -> None:
    if not math.isnan(value):
        family.add_metric(labels, value)
