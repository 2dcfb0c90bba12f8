"""The adapter's configuration file: prometheus-adapter rules plus what to forecast.

One YAML file (``--config``), strictly validated: unknown keys, bad values and impossible
combinations are all collected, each with its YAML path, and reported together in one
`InvalidConfiguration`. The seed's ``rules`` / ``externalRules`` are accepted unchanged (see
`adapter.rules`); on top, ``forecasts`` lists the targets:

```yaml
forecasts:
- name: nginx                      # DNS label; served as label target=nginx
  namespace: default               # served in this namespace (the HPA's)
  workload: {kind: StatefulSet, name: nginx}
  traffic:                         # one or more load signals to forecast
  - metric: nginx_ingress_controller_requests_rate   # a name the rules define...
    selector: {ingress: nginx-server}
  # - name: requests_rate           # ...or raw PromQL with a name of its own
  #   query: 'sum(rate(http_requests_total{job="web"}[3m]))'
  #   counter: false                # true: the query returns a raw counter; rate it here
  resource:                        # learn usage ~ replicas + traffic from history...
    query: 'sum(rate(container_cpu_usage_seconds_total{namespace="default",container="nginx"}[3m]))'
    targetUtilization: 30          # percent of `request` per pod...
    request: 1                     # ...(same unit as the query, e.g. cores)
    # targetAverageValue: 0.3      # or the usage per pod at target directly
  replicas:                        # ready replicas, for the resource policy's fit
    query: 'sum(kube_statefulset_status_replicas_ready{namespace="default",statefulset="nginx"})'

  # capacity: {perPod: 50}         # ...or state what one pod handles (one traffic signal)
  step: 5m                         # model resolution (1m..1h)
  history: 14d                     # history the model sees (at most 30d)
  leadTime: 10m                    # capacity must be ready this far ahead (pod start-up)
  minReplicas: 1
  maxReplicas: 10
  quantile: 0.9                    # the forecast quantile capacity is planned for
  # objective: {maxTimeAboveCapacity: 1%}   # capacity policy only: tune the sizing instead
  #   (headroom: 10% counts the time above 90% of capacity instead)
  resultConfigMap: false           # also write Kapacity's <name>-result ConfigMap
```

Pure parsing: no I/O beyond the text it is given, no Prometheus, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from adapter import rules as rules_module
from adapter.errors import InvalidConfiguration
from adapter.objective import Objective
from adapter.validation import (
    MAX_DOCUMENT_BYTES,
    collection_paused,
    is_dns_label,
    is_metric_name,
    is_prometheus_metric_name,
    label_problems,
    load_document,
    parse_duration,
    quote,
    shorten,
    validate_label,
)

_TOP_KEYS = frozenset({"rules", "externalRules", "resourceRules", "forecasts"})
_TARGET_KEYS = frozenset(
    {
        "name", "namespace", "workload", "traffic", "resource", "replicas", "capacity", "step",
        "history", "leadTime", "minReplicas", "maxReplicas", "quantile", "resultConfigMap",
        "objective",
    }
)  # fmt: skip
MAX_HORIZON_STEPS = 48
"""The forecaster's horizon: the lead time must fit in it."""


@dataclasses.dataclass(frozen=True)
class TrafficSignal:
    """One load signal of a target; served as ``predicted_<name>``."""

    name: str
    metric: str | None = None
    selector: tuple[tuple[str, str], ...] = ()
    query: str | None = None
    counter: bool = False

    @property
    def served_metric(self) -> str:
        return f"predicted_{self.name}"


@dataclasses.dataclass(frozen=True)
class ResourcePolicy:
    """Learn per-pod usage from history; plan for `target` usage per pod."""

    query: str
    target: float


@dataclasses.dataclass(frozen=True)
class CapacityPolicy:
    """One pod handles `per_pod` units of the (single) traffic signal."""

    per_pod: float


@dataclasses.dataclass(frozen=True)
class ForecastTarget:
    name: str
    namespace: str
    workload_kind: str
    workload_name: str
    traffic: tuple[TrafficSignal, ...]
    resource: ResourcePolicy | None
    replicas_query: str | None
    capacity: CapacityPolicy | None
    step: int
    history: int
    lead_time: int
    min_replicas: int
    max_replicas: int
    quantile: float
    result_configmap: bool
    objective: Objective | None = None
    """Tune the sizing for this objective (capacity policy); None: the manual quantile."""

    @property
    def labels(self) -> dict[str, str]:
        """Labels of the served predicted_replicas series (the HPA selects target=<name>)."""
        return {
            "target": self.name,
            "workload": self.workload_name,
            "workload_kind": self.workload_kind,
        }

    def signal_labels(self, signal: TrafficSignal) -> dict[str, str]:
        """Labels of a traffic signal's served predicted_<signal> series."""
        return {"target": self.name, **dict(signal.selector)}

    @property
    def lead_steps(self) -> int:
        return max(1, -(-self.lead_time // self.step))

    @property
    def window_steps(self) -> int:
        """The lead window a calibrated bound covers: now up to the step pods ordered now are
        ready for (`adapter.objective`)."""
        return -(-self.lead_time // self.step) + 1


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    rules: tuple[rules_module.MetricRule, ...]
    targets: tuple[ForecastTarget, ...]

    def served_metrics(self) -> list[str]:
        names = {signal.served_metric for t in self.targets for signal in t.traffic}
        if self.targets:
            names.add("predicted_replicas")
        return sorted(names)


def load_config(
    text: bytes | str, source: str, *, max_bytes: int = MAX_DOCUMENT_BYTES
) -> AdapterConfig:
    """Parse and validate; `InvalidConfiguration` lists every problem with its path.

    The text is refused unread past `max_bytes`, and parsed as `load_document` parses every
    file. An empty file is a problem, never a configuration of no rules and no targets.
    """
    with collection_paused():
        return _config(load_document(text, source, max_bytes=max_bytes), source)


def _config(document: Mapping[Any, Any], source: str) -> AdapterConfig:
    if not document:
        raise InvalidConfiguration(source, ["the file defines no rules and no forecasts"])
    problems = [f"{shorten(str(key))}: unknown field" for key in document if key not in _TOP_KEYS]
    loaded_rules = rules_module.load_rules(document, problems)
    targets: list[ForecastTarget] = []
    raw_targets = document.get("forecasts", [])
    if not isinstance(raw_targets, list):
        problems.append("forecasts: must be a list")
        raw_targets = []
    names: set[tuple[str, str]] = set()
    for index, raw in enumerate(raw_targets):
        target = _target(raw, f"forecasts[{index}]", problems)
        if target is None:
            continue
        if (target.namespace, target.name) in names:
            problems.append(
                f"forecasts[{index}].name: {quote(target.name)} is used twice in namespace "
                f"{quote(target.namespace)}"
            )
        names.add((target.namespace, target.name))
        targets.append(target)
    if problems:
        raise InvalidConfiguration(source, problems)
    return AdapterConfig(tuple(loaded_rules), tuple(targets))


class _Reader:
    """Typed field access that records a problem instead of raising."""

    def __init__(self, raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.raw, self.where, self.problems = raw, where, problems
        self.failed = False

    def problem(self, field: str, message: str) -> None:
        self.problems.append(f"{self.where}.{field}: {message}")
        self.failed = True

    def string(self, field: str, *, required: bool = True, dns_label: bool = False) -> str | None:
        value = self.raw.get(field)
        if value is None:
            if required:
                self.problem(field, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(field, "must be a non-empty string")
            return None
        if dns_label and not is_dns_label(value):
            self.problem(field, f"{quote(value)} must be a DNS-1123 label")
            return None
        return value

    def number(
        self, field: str, default: float | None, low: float, high: float, *, integer: bool = False
    ) -> float | None:
        value = self.raw.get(field, default)
        if value is None:
            self.problem(field, "is required")
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and not isinstance(value, int))
        ):
            self.problem(field, f"must be {'a whole number' if integer else 'a number'}")
            return None
        if not low <= value <= high:
            self.problem(field, f"{shorten(str(value))} is outside [{low:g}, {high:g}]")
            return None
        return float(value)

    def duration(self, field: str, default: str, low: float, high: float) -> int | None:
        value = self.raw.get(field, default)
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.problem(field, str(exc))
            return None
        if not low <= seconds <= high:
            self.problem(field, f"{shorten(str(value))} is outside [{_human(low)}, {_human(high)}]")
            return None
        return round(seconds)

    def mapping(self, field: str) -> Mapping[str, Any] | None:
        value = self.raw.get(field)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(field, "must be a mapping")
            return None
        return value

    def unknown(
        self, allowed: Collection[str], raw: Mapping[Any, Any] | None = None, at: str = ""
    ) -> None:
        """Report the keys not in `allowed` of the reader's mapping, or of `raw` found at `at`."""
        for key in self.raw if raw is None else raw:
            if key not in allowed:
                self.problem(f"{at}{shorten(str(key))}", "unknown field")


def _target(raw: Any, where: str, problems: list[str]) -> ForecastTarget | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    read = _Reader(raw, where, problems)
    read.unknown(_TARGET_KEYS)
    name = read.string("name", dns_label=True)
    namespace = read.string("namespace", dns_label=True)
    workload = read.mapping("workload") or {}
    kind = workload.get("kind", "Deployment")
    workload_name = workload.get("name", name)
    read.unknown(("kind", "name"), workload, "workload.")
    for field, value in (("kind", kind), ("name", workload_name)):
        if value is not None and (not isinstance(value, str) or validate_label("workload", value)):
            read.problem(f"workload.{field}", f"{quote(value)} must be usable as a label value")
    traffic = _traffic(raw.get("traffic"), f"{where}.traffic", read)
    step = read.duration("step", "5m", 60, 3600)
    history = read.duration("history", "14d", 3600, 30 * 86400)
    lead = read.duration("leadTime", "10m", 0, 86400)
    low = read.number("minReplicas", 1, 1, 100_000, integer=True)
    high = read.number("maxReplicas", None, 1, 100_000, integer=True)
    quantile = read.number("quantile", 0.9, 0.05, 0.95)
    result = raw.get("resultConfigMap", False)
    if not isinstance(result, bool):
        read.problem("resultConfigMap", "must be true or false")
    resource = _resource(read.mapping("resource"), read)
    replicas = read.mapping("replicas")
    replicas_query = None
    if replicas is not None:
        replicas_query = replicas.get("query")
        if not isinstance(replicas_query, str) or not replicas_query.strip():
            read.problem("replicas.query", "must be a PromQL query")
        read.unknown(("query",), replicas, "replicas.")
    capacity = _capacity(read.mapping("capacity"), read)
    objective = _objective(read.mapping("objective"), read)
    if objective is not None and capacity is None and not read.failed:
        read.problem("objective", "needs a capacity policy (capacity.perPod) to replay against")
    if resource is None and capacity is None and not read.failed:
        read.problem("resource", "either resource (with replicas) or capacity is required")
    if resource is not None and capacity is not None:
        read.problem("capacity", "give either resource or capacity, not both")
    if resource is not None and replicas_query is None:
        read.problem("replicas", "a resource policy needs the ready-replicas query")
    if capacity is not None and len(traffic) != 1:
        read.problem("capacity", "applies to exactly one traffic signal")
    # The lead window (now .. now + lead time) must fit in the forecaster's horizon.
    if step is not None and lead is not None and lead > (MAX_HORIZON_STEPS - 1) * step:
        longest = MAX_HORIZON_STEPS - 1
        read.problem("leadTime", f"must be at most {longest} steps ({_human(longest * step)})")
    if low is not None and high is not None and high < low:
        read.problem("maxReplicas", f"{high:g} is below minReplicas {low:g}")
    if (
        read.failed
        or name is None
        or namespace is None
        or step is None
        or history is None
        or lead is None
        or low is None
        or high is None
        or quantile is None
    ):
        return None
    return ForecastTarget(
        name=name,
        namespace=namespace,
        workload_kind=str(kind),
        workload_name=str(workload_name),
        traffic=tuple(traffic),
        resource=resource,
        replicas_query=replicas_query,
        capacity=capacity,
        step=step,
        history=history,
        lead_time=lead,
        min_replicas=int(low),
        max_replicas=int(high),
        quantile=quantile,
        result_configmap=bool(result),
        objective=objective,
    )


def _traffic(raw: Any, where: str, read: _Reader) -> list[TrafficSignal]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        read.problem("traffic", "must list at least one load signal")
        return []
    signals = []
    for index, item in enumerate(raw):
        here = f"traffic[{index}]"
        if not isinstance(item, dict):
            read.problem(here, "must be a mapping")
            continue
        read.unknown(("name", "metric", "selector", "query", "counter"), item, f"{here}.")
        metric, query = item.get("metric"), item.get("query")
        if (metric is None) == (query is None):
            read.problem(here, "give exactly one of metric (from the rules) or query (PromQL)")
            continue
        selector = item.get("selector", {})
        if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
            read.problem(f"{here}.selector", "must map label names to strings")
            selector = {}
        read.problems.extend(label_problems(selector, f"{where}[{index}].selector"))
        name = item.get("name", metric)
        if (
            not isinstance(name, str)
            or not is_prometheus_metric_name(name)
            or not is_metric_name(f"predicted_{name}")
        ):
            read.problem(
                f"{here}.name", f"{quote(name)} cannot name a metric (letters, digits, _ and :)"
            )
            continue
        counter = item.get("counter", False)
        if not isinstance(counter, bool):
            read.problem(f"{here}.counter", "must be true or false")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            read.problem(f"{here}.query", "must be a PromQL query")
            continue
        signals.append(
            TrafficSignal(
                name=name,
                metric=metric if isinstance(metric, str) else None,
                selector=tuple(sorted(selector.items())),
                query=query,
                counter=bool(counter),
            )
        )
    served = [s.name for s in signals]
    for duplicate in {n for n in served if served.count(n) > 1}:
        read.problem("traffic", f"two signals are named {quote(duplicate)}; give one a name")
    return signals


def _resource(raw: Mapping[str, Any] | None, read: _Reader) -> ResourcePolicy | None:
    if raw is None:
        return None
    sub = _Reader(raw, f"{read.where}.resource", read.problems)
    sub.unknown(frozenset({"query", "targetUtilization", "request", "targetAverageValue"}))
    query = sub.string("query")
    if "targetAverageValue" in raw:
        target = sub.number("targetAverageValue", None, 1e-12, 1e15)
        if "targetUtilization" in raw or "request" in raw:
            sub.problem(
                "targetAverageValue",
                "give either targetAverageValue or targetUtilization with request",
            )
    else:
        utilization = sub.number("targetUtilization", None, 1, 100)
        request = sub.number("request", None, 1e-12, 1e15)
        target = utilization * request / 100 if utilization and request else None
    read.failed |= sub.failed
    if query is None or target is None:
        return None
    return ResourcePolicy(query=query, target=target)


def _capacity(raw: Mapping[str, Any] | None, read: _Reader) -> CapacityPolicy | None:
    if raw is None:
        return None
    sub = _Reader(raw, f"{read.where}.capacity", read.problems)
    sub.unknown(frozenset({"perPod"}))
    per_pod = sub.number("perPod", None, 1e-12, 1e15)
    read.failed |= sub.failed
    return CapacityPolicy(per_pod) if per_pod else None


def _objective(raw: Mapping[str, Any] | None, read: _Reader) -> Objective | None:
    if raw is None:
        return None
    sub = _Reader(raw, f"{read.where}.objective", read.problems)
    sub.unknown(frozenset({"maxTimeAboveCapacity", "headroom"}))
    share: float | None = None
    if raw.get("maxTimeAboveCapacity") is None:
        sub.problem("maxTimeAboveCapacity", "is required (a percentage such as 1%)")
    else:
        share = _percentage(raw["maxTimeAboveCapacity"], "maxTimeAboveCapacity", 0.5, sub)
    headroom = 0.0
    if raw.get("headroom") is not None:
        headroom = _percentage(raw["headroom"], "headroom", 0.5, sub) or 0.0
    read.failed |= sub.failed
    return None if share is None or sub.failed else Objective(share, headroom)


def _percentage(value: object, key: str, most: float, read: _Reader) -> float | None:
    """A percentage (``1%`` or the number 1) as a share in [0, `most`]; None and a problem
    named if it is not one."""
    share: float | None = None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            read.problem(key, f"{quote(shorten(value))} is not a percentage")
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value) / 100
    else:
        read.problem(key, "must be a percentage such as 1% (or the number 1)")
        return None
    if not 0 <= share <= most:
        read.problem(key, f"{share * 100:g}% is outside [0%, {100 * most:g}%]")
        return None
    return share


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
