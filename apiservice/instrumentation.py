"""The server's own Prometheus metrics, exposed on /metrics.

One registry per server (not the process-global default), so that several servers in one
test process do not collide. Label values are bounded: routes are route templates, never raw
paths; users are never labels.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.reload_failures = Counter(
            f"{PREFIX}_reload_failures_total",
            "Failed reloads that left the previous material in use, by what was reloaded.",
            ["what"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
