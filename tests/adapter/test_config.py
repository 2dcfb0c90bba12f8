"""The configuration file: the seed's rules as they are, forecast targets, strict errors."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from adapter import InvalidConfiguration, load_config
from tests.samples import SEED_RULES, WEB_TARGET

SEED = (
    SEED_RULES
    + """
forecasts:
- name: nginx
  namespace: default
  workload: {kind: StatefulSet, name: nginx}
  traffic:
  - metric: nginx_ingress_controller_requests_rate
    selector: {ingress: nginx-server}
  resource:
    query: 'sum(rate(container_cpu_usage_seconds_total{namespace="default",container="nginx"}[3m]))'
    targetUtilization: 30
    request: 1
  replicas:
    query: 'sum(kube_statefulset_status_replicas_ready{namespace="default",statefulset="nginx"})'
  step: 5m
  history: 14d
  leadTime: 10m
  minReplicas: 1
  maxReplicas: 10
"""
)


def test_the_seed_configuration_loads() -> None:
    config = load_config(SEED, "seed.yaml")
    assert len(config.rules) == 1
    (target,) = config.targets
    assert (target.namespace, target.name, target.workload_kind) == (
        "default",
        "nginx",
        "StatefulSet",
    )
    (signal,) = target.traffic
    assert signal.served_metric == "predicted_nginx_ingress_controller_requests_rate"
    assert signal.selector == (("ingress", "nginx-server"),)
    assert target.resource is not None
    assert target.resource.target == pytest.approx(0.3)
    assert (target.step, target.history, target.lead_time, target.lead_steps) == (
        300,
        14 * 86400,
        600,
        2,
    )
    assert target.quantile == 0.9
    assert target.labels == {"target": "nginx", "workload": "nginx", "workload_kind": "StatefulSet"}
    assert config.served_metrics() == [
        "predicted_nginx_ingress_controller_requests_rate",
        "predicted_replicas",
    ]


def test_three_mistakes_are_reported_together_with_their_places() -> None:
    broken = (
        SEED.replace("leadTime: 10m", "leadTime: 10 minutes")
        .replace("maxReplicas: 10", "maxReplicas: 0")
        .replace("  step: 5m", "  step: 5m\n  colour: blue")
    )
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(broken, "broken.yaml")
    assert caught.value.problems == [
        "forecasts[0].colour: unknown field",
        "forecasts[0].leadTime: invalid duration '10 minutes' (use e.g. 30s, 5m, 1h30m, 14d)",
        "forecasts[0].maxReplicas: 0 is outside [1, 100000]",
    ]
    assert "broken.yaml: 3 problem(s)" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("leadTime: 10m", "leadTime: 4h"),
            "forecasts[0].leadTime: must be at most 47 steps (235m)",
        ),
        (
            ("minReplicas: 1", "minReplicas: 20"),
            "forecasts[0].maxReplicas: 10 is below minReplicas 20",
        ),
        (("  replicas:\n", "  notreplicas:\n"), "forecasts[0].replicas: a resource policy needs"),
        (
            ("name: nginx\n", "name: Nginx_1\n"),
            "forecasts[0].name: 'Nginx_1' must be a DNS-1123 label",
        ),
        (("step: 5m", "step: 10s"), "forecasts[0].step: 10s is outside [1m, 1h]"),
        (("selector: {ingress: nginx-server}", "selector: {in-gress: x}"), "selector"),
        (
            ("  resource:\n", "  capacity: {perPod: 5}\n  resource:\n"),
            "give either resource or capacity",
        ),
    ],
)
def test_each_rule_of_a_target(change: tuple[str, str], problem: str) -> None:
    text = SEED.replace(*change)
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(text, "bad.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_capacity_policy_with_a_raw_query() -> None:
    config = load_config(
        """
forecasts:
- name: web
  namespace: shop
  traffic: {name: requests, query: 'sum(rate(http_requests_total[2m]))'}
  capacity: {perPod: 50}
  maxReplicas: 30
""",
        "x",
    )
    (target,) = config.targets
    assert target.capacity is not None
    assert target.capacity.per_pod == 50
    assert target.traffic[0].served_metric == "predicted_requests"
    assert target.workload_name == "web"


def test_two_signals_need_names_and_capacity_needs_one_signal() -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(
            """
forecasts:
- name: web
  namespace: shop
  traffic:
  - {name: a, query: q1}
  - {name: a, query: q2}
  capacity: {perPod: 50}
  maxReplicas: 3
""",
            "x",
        )
    assert (
        "forecasts[0].traffic: two signals are named 'a'; give one a name" in caught.value.problems
    )
    assert "forecasts[0].capacity: applies to exactly one traffic signal" in caught.value.problems


CAPACITY_TARGET = """
forecasts:
- name: web
  namespace: shop
  traffic: {name: requests, query: 'sum(rate(http_requests_total[2m]))'}
  %s
  maxReplicas: 30
  leadTime: 10m
%s
"""


@pytest.mark.parametrize(("given", "share"), [("1%", 0.01), ("0.5 %", 0.005), ("2", 0.02)])
def test_an_objective_is_a_share_of_the_time(given: str, share: float) -> None:
    text = CAPACITY_TARGET % (
        "capacity: {perPod: 50}",
        f"  objective: {{maxTimeAboveCapacity: {given}}}",
    )
    (target,) = load_config(text, "x").targets
    assert target.objective is not None
    assert target.objective.max_time_above_capacity == pytest.approx(share)
    assert target.window_steps == 3  # now, +5 min, +10 min: when pods ordered now are ready


def test_an_objective_may_keep_headroom() -> None:
    text = CAPACITY_TARGET % (
        "capacity: {perPod: 50}",
        "  objective: {maxTimeAboveCapacity: 1%, headroom: 10%}",
    )
    (target,) = load_config(text, "x").targets
    assert target.objective is not None
    assert target.objective.headroom == pytest.approx(0.1)
    assert target.objective.capacity_share == pytest.approx(0.9)


def test_objective_problems_are_named_together() -> None:
    text = CAPACITY_TARGET % (
        "resource: {query: u, targetAverageValue: 1}\n  replicas: {query: r}",
        "  objective: {maxTimeAboveCapacity: 80%, headroom: lots, extra: 1}",
    )
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(text, "x")
    problems = caught.value.problems
    assert "forecasts[0].objective.extra: unknown field" in problems
    assert "forecasts[0].objective.maxTimeAboveCapacity: 80% is outside [0%, 50%]" in problems
    assert (
        "forecasts[0].objective.headroom: must be a percentage such as 1% (or the number 1)"
        in problems
    )
    bare = CAPACITY_TARGET % (
        "resource: {query: u, targetAverageValue: 1}\n  replicas: {query: r}",
        "  objective: {maxTimeAboveCapacity: 1%}",
    )
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(bare, "x")
    assert (
        "forecasts[0].objective: needs a capacity policy (capacity.perPod) to replay against"
        in caught.value.problems
    )


def alias_bomb(field: str = "  workload: {kind: *h}") -> str:
    """The web target with `field` set to an alias that stands for 9^8 strings; the anchors
    are defined beforehand under ``resourceRules`` (a key the config accepts, unread)."""
    lines = ["  a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, 8):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "resourceRules:\n" + "\n".join(lines) + "\n" + WEB_TARGET + field + "\n"


def test_an_alias_bomb_is_refused_at_once_in_little_memory_with_a_short_message() -> None:
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(InvalidConfiguration) as caught:
            load_config(alias_bomb(), "bomb.yaml")
        took = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"\nalias bomb refused in {took * 1000:.1f} ms, peak {peak / 2**20:.2f} MiB allocated")
    assert took < 1
    assert peak < 50 * 2**20
    assert len(str(caught.value)) < 1024


@pytest.mark.parametrize("text", ["", "# targets to come\n", "{}"])
def test_an_empty_file_is_refused_never_read_as_no_targets(text: str) -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        load_config(text, "empty.yaml")
    (problem,) = caught.value.problems
    assert "empty" in problem or "defines no rules and no forecasts" in problem
