"""The domain: what to serve, for which series, and why it may be unavailable.

This package grows into the forecasting pipeline (rules, Prometheus history, refresh, the
load-to-replicas policy, the prediction store). The API surface (`apiservice`) sees only what
is re-exported here: the provider seam, label selectors, and the errors a request can meet.
"""

from adapter.api import ExternalMetricsProvider, MetricInfo, MetricValue
from adapter.errors import (
    AdapterError,
    InvalidConfiguration,
    InvalidSelector,
    MetricNotFound,
    PredictionUnavailable,
)
from adapter.selectors import EVERYTHING, Selector, parse_selector
from adapter.static import StaticProvider, is_metric_name
from adapter.store import ValueTable

__all__ = [
    "EVERYTHING",
    "AdapterError",
    "ExternalMetricsProvider",
    "InvalidConfiguration",
    "InvalidSelector",
    "MetricInfo",
    "MetricNotFound",
    "MetricValue",
    "PredictionUnavailable",
    "Selector",
    "StaticProvider",
    "ValueTable",
    "is_metric_name",
    "parse_selector",
]
