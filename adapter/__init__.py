"""The domain: what to serve, for which series, and why it may be unavailable.

The forecasting pipeline: configuration (rules and targets), Prometheus history, the refresh
loop, the load-to-replicas policy and the prediction store, plus the static values provider.
The API surface (`apiservice`) sees only what is re-exported here.
"""

from adapter.api import ExternalMetricsProvider, MetricInfo, MetricValue, TargetPredictions
from adapter.config import AdapterConfig, load_config
from adapter.errors import (
    AdapterError,
    InvalidConfiguration,
    InvalidSelector,
    MetricNotFound,
    PredictionUnavailable,
)
from adapter.objective import Objective
from adapter.predictions import REPLICAS, PredictionStore
from adapter.prometheus import HistorySource, PrometheusSettings, PrometheusSource
from adapter.refresher import Refresher, ResultWriter, TargetStatus
from adapter.replay import ReplaySource
from adapter.selectors import EVERYTHING, Selector, parse_selector
from adapter.static import StaticProvider
from adapter.store import ValueTable
from adapter.validation import MAX_DOCUMENT_BYTES, is_metric_name, parse_duration, read_document
from adapter.whatif import (
    CsvInput,
    PrometheusInput,
    ReplayOptions,
    WhatIfError,
    parse_headroom,
    parse_objective,
    parse_time,
    run_replay,
)
from adapter.whatif_plot import plot_frontier, plot_replay

__all__ = [
    "EVERYTHING",
    "MAX_DOCUMENT_BYTES",
    "REPLICAS",
    "AdapterConfig",
    "AdapterError",
    "CsvInput",
    "ExternalMetricsProvider",
    "HistorySource",
    "InvalidConfiguration",
    "InvalidSelector",
    "MetricInfo",
    "MetricNotFound",
    "MetricValue",
    "Objective",
    "PredictionStore",
    "PredictionUnavailable",
    "PrometheusInput",
    "PrometheusSettings",
    "PrometheusSource",
    "Refresher",
    "ReplayOptions",
    "ReplaySource",
    "ResultWriter",
    "Selector",
    "StaticProvider",
    "TargetPredictions",
    "TargetStatus",
    "ValueTable",
    "WhatIfError",
    "is_metric_name",
    "load_config",
    "parse_duration",
    "parse_headroom",
    "parse_objective",
    "parse_selector",
    "parse_time",
    "plot_frontier",
    "plot_replay",
    "read_document",
    "run_replay",
]
