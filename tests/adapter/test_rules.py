"""prometheus-adapter rules: naming series, rendering queries, and strict loading."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from adapter.rules import MetricRule, load_rules, metric_names, render_query, series_selector
from adapter.validation import label_problems
from tests.samples import SEED_RULES


def seed_document() -> dict[str, Any]:
    """The seed's rule, once as a custom-metrics rule and once as an external one."""
    return {
        "rules": yaml.safe_load(SEED_RULES)["rules"],
        "externalRules": yaml.safe_load(SEED_RULES)["rules"],
    }


QUERY = "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"


def load(document: dict[str, Any]) -> list[MetricRule]:
    problems: list[str] = []
    rules = load_rules(document, problems)
    assert problems == []
    return rules


def one_rule(external: bool = False, **fields: Any) -> MetricRule:
    rule: dict[str, Any] = {"seriesQuery": '{__name__=~".+"}', "metricsQuery": QUERY, **fields}
    (loaded,) = load({"externalRules" if external else "rules": [rule]})
    return loaded


@pytest.mark.parametrize("section", ["rules", "externalRules"])
def test_the_seed_rule_renders_exactly(section: str) -> None:
    rules = load(seed_document())
    (rule,) = (rule for rule in rules if rule.where == f"{section}[0]")
    assert series_selector(rule) == (
        '{__name__=~"^nginx_ingress_controller_requests.*",namespace!=""}'
    )
    names = metric_names(rule, ["nginx_ingress_controller_requests"])
    assert names == {"nginx_ingress_controller_requests_rate": "nginx_ingress_controller_requests"}
    query = render_query(
        rule,
        names["nginx_ingress_controller_requests_rate"],
        "default",
        {"ingress": "nginx-server"},
    )
    assert query == (
        'round(sum(rate(nginx_ingress_controller_requests{ingress="nginx-server",'
        'namespace="default"}[3m])) by (ingress), 0.001)'
    )


@pytest.mark.parametrize(
    ("name", "series", "expected"),
    [
        pytest.param(
            {"matches": "^(.*)_total$", "as": "${1}_per_second"},
            ["http_requests_total", "http_requests_seconds"],
            {"http_requests_per_second": "http_requests_total"},
            id="braced-group-then-text",
        ),
        pytest.param(
            {"matches": "^(.*)_total$", "as": "$1"},
            ["http_requests_total"],
            {"http_requests": "http_requests_total"},
            id="bare-group",
        ),
        pytest.param(
            {"matches": "^(.*)_total$"},
            ["http_requests_total"],
            {"http_requests": "http_requests_total"},
            id="as-defaults-to-the-one-group",
        ),
        pytest.param(
            {"matches": "", "as": ""},
            ["a_total", "b"],
            {"a_total": "a_total", "b": "b"},
            id="empty-means-whole-name",
        ),
        pytest.param(
            {"matches": "requests"},
            ["http_requests_total"],
            {"requests": "http_requests_total"},
            id="no-group-means-the-match-unanchored",
        ),
        pytest.param(
            {"matches": "^(?P<base>.*)_total$", "as": "${base}_rate"},
            ["x_total"],
            {"x_rate": "x_total"},
            id="named-group",
        ),
        pytest.param(
            {"matches": "^(.*)_total$", "as": "cost_$$_$1"},
            ["x_total"],
            {"cost_$_x": "x_total"},
            id="dollar-dollar-is-literal",
        ),
        pytest.param(
            {"matches": "", "as": "requests_rate"},
            ["requests", "requests_total"],
            {"requests_rate": "requests_total"},
            id="collision-greatest-series-wins",
        ),
    ],
)
def test_naming(name: dict[str, str], series: list[str], expected: dict[str, str]) -> None:
    assert metric_names(one_rule(name=name), series) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([], ["container_cpu_seconds_total", "container_fs_reads_total", "node_load1"]),
        ([{"is": "^container_"}], ["container_cpu_seconds_total", "container_fs_reads_total"]),
        ([{"isNot": "_seconds_total$"}], ["container_fs_reads_total", "node_load1"]),
        ([{"is": "^container_"}, {"isNot": "_seconds_total$"}], ["container_fs_reads_total"]),
        ([{"is": "seconds"}], ["container_cpu_seconds_total"]),  # unanchored
    ],
)
def test_series_filters(filters: list[dict[str, str]], expected: list[str]) -> None:
    series = ["container_cpu_seconds_total", "container_fs_reads_total", "node_load1"]
    rule = one_rule(seriesFilters=filters)
    assert sorted(metric_names(rule, series)) == expected


@pytest.mark.parametrize(
    ("external", "resources", "namespace", "selector", "expected"),
    [
        pytest.param(
            False,
            {"template": "<<.Resource>>"},
            "shop",
            {"path": 'say "hi"\\now', "app": "web"},
            'sum(rate(m{app="web",namespace="shop",path="say \\"hi\\"\\\\now"}[2m])) by (app,path)',
            id="escaping-and-sorted-order",
        ),
        pytest.param(
            False,
            {"template": "<<.Resource>>"},
            "shop",
            {"tier": "a\nb\tc\x01"},
            'sum(rate(m{namespace="shop",tier="a\\nb\\tc\\x01"}[2m])) by (tier)',
            id="control-characters",
        ),
        pytest.param(
            False,
            {"template": "<<.Resource>>"},
            "shop",
            {},
            'sum(rate(m{namespace="shop"}[2m])) by ()',
            id="empty-selector",
        ),
        pytest.param(
            False,
            {"template": "<<.Resource>>"},
            None,
            {},
            "sum(rate(m{}[2m])) by ()",
            id="no-namespace",
        ),
        pytest.param(
            False,
            {"overrides": {"pod": {"resource": "pod"}}},
            "shop",
            {"a": "1"},
            'sum(rate(m{a="1"}[2m])) by (a)',
            id="rule-without-namespace-label",
        ),
        pytest.param(
            False,
            {"overrides": {"kubernetes_namespace": {"resource": "namespace"}}},
            "shop",
            {"a": "1"},
            'sum(rate(m{a="1",kubernetes_namespace="shop"}[2m])) by (a)',
            id="namespace-label-from-override",
        ),
        pytest.param(
            False,
            {"template": "kube_<<.Group>>_<<.Resource>>"},
            "shop",
            {"a": "1"},
            'sum(rate(m{a="1",kube__namespace="shop"}[2m])) by (a)',
            id="namespace-label-from-template",
        ),
        pytest.param(
            True,
            {"template": "<<.Resource>>"},
            "shop",
            {"a": "1"},
            'sum(rate(m{a="1",namespace="shop"}[2m])) by (a)',
            id="external-namespaced-by-default",
        ),
        pytest.param(
            True,
            {"namespaced": False},
            "shop",
            {"a": "1", "namespace": "queue"},
            'sum(rate(m{a="1",namespace="queue"}[2m])) by (a,namespace)',
            id="external-not-namespaced",
        ),
        pytest.param(
            True,
            {"template": "<<.Resource>>", "namespaced": False},
            "shop",
            {"a": "1"},
            'sum(rate(m{a="1"}[2m])) by (a)',
            id="external-not-namespaced-despite-template",
        ),
    ],
)
def test_render_query(
    external: bool,
    resources: dict[str, Any],
    namespace: str | None,
    selector: dict[str, str],
    expected: str,
) -> None:
    rule = one_rule(external, resources=resources)
    assert render_query(rule, "m", namespace, selector) == expected


def test_placeholders_may_have_spaces_inside() -> None:
    rule = one_rule(metricsQuery="max(<< .Series >>{<<.LabelMatchers >>}) by (<<  .GroupBy>>)")
    assert render_query(rule, "m", None, {"a": "1"}) == 'max(m{a="1"}) by (a)'


def test_an_illegal_selector_key_is_reported_and_refused() -> None:
    selector = {"app.kubernetes.io/name": "web", "ok_key": "x", "9lives": "y"}
    assert label_problems(selector, "targets[0].labels") == [
        "targets[0].labels: '9lives' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
        "targets[0].labels: 'app.kubernetes.io/name' is not a valid Prometheus label name "
        "([a-zA-Z_][a-zA-Z0-9_]*)",
    ]
    assert label_problems({"_private": "x", "Camel9": "y"}, "w") == []
    with pytest.raises(ValueError, match="app.kubernetes.io/name"):
        render_query(one_rule(), "m", None, selector)


def test_resource_rules_and_absent_sections_are_accepted() -> None:
    problems: list[str] = []
    document = {"resourceRules": {"cpu": {"containerQuery": "x"}}, "rules": None}
    assert load_rules(document, problems) == []
    assert problems == []


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    document = yaml.safe_load(
        """
rules:
- seriesQuery: up
  metricsQuery: "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.Foo>>)"
- seriesQuery: up
  metricsQuery: "<<.Series>>"
  name: {matches: "^(.*)_total$", as: "$1_per_second"}
- seriesQueryy: up
  metricsQuery: "<<.Series>>"
- seriesQuery: up
  seriesFilters: [{is: a, isNot: b}, {isNot: "(["}, {}]
- seriesQuery: up
  metricsQuery: "<<.Series>>{<<.LabelMatchers}"
  resources: {template: "<<.Kind>>", overrides: {bad-label: {resource: pod}}, namespaced: true}
  labelValueReplacements: []
- seriesQuery: up
  metricsQuery: "sum(<<.Series>>) by (<<.GroupBySlice>>) <<.Series"
  name: {matches: "(a)(b)"}
- {seriesQuery: good, metricsQuery: "<<.Series>>"}
externalRules:
- seriesQuery: up
  metricsQuery: "<<.Series>>"
- seriesQuery: up
  metricsQuery: "<<.Series>>"
  name: {matches: "(unclosed"}
  resources: {namespaced: "no"}
- seriesQuery: up
  metricsQuery: "<<.Series>>"
  resources:
    overrides: {namespace: {resource: namespace}, ns: {resource: namespaces}}
- seriesQuery: 7
- not a rule
"""
    )
    problems: list[str] = []
    rules = load_rules(document, problems)
    assert [rule.where for rule in rules] == ["rules[6]"]
    expected = [
        "rules[0].metricsQuery: unknown placeholder <<.Foo>>",
        "rules[1].name.as: '$1_per_second' names no capture group of name.matches; Go reads "
        "'$1_per_second' as a group named '1_per_second', write '${1}_per_second'",
        "rules[2]: unknown field 'seriesQueryy'",
        "rules[2].seriesQuery: required",
        "rules[3].seriesFilters[0]: set either 'is' or 'isNot', not both",
        "rules[3].seriesFilters[1].isNot: invalid regex (",
        "rules[3].seriesFilters[2]: needs a non-empty 'is' or 'isNot'",
        "rules[3].metricsQuery: required",
        "rules[4]: unsupported field 'labelValueReplacements'",
        "rules[4].resources.template: unknown placeholder <<.Kind>>",
        "rules[4].resources.overrides.bad-label: 'bad-label' is not a valid Prometheus label name",
        "rules[4].resources.namespaced: applies to externalRules only",
        "rules[4].metricsQuery: unclosed placeholder ('<<' without '>>')",
        "rules[5].name.as: required when name.matches has several capture groups",
        "rules[5].metricsQuery: unsupported placeholder <<.GroupBySlice>> (use <<.GroupBy>>, "
        "<<.LabelMatchers>>, <<.Series>>)",
        "rules[5].metricsQuery: unclosed placeholder ('<<' without '>>')",
        "externalRules[0].resources: the rule is namespaced but maps no label to the namespace "
        "resource",
        "externalRules[1].resources.namespaced: must be true or false (got 'no')",
        "externalRules[1].name.matches: invalid regex (missing ), unterminated subpattern",
        "externalRules[2].resources.overrides: more than one label maps to the namespace "
        "resource (namespace, ns)",
        "externalRules[3].seriesQuery: must be a string (got 7)",
        "externalRules[3].resources: the rule is namespaced but maps no label",
        "externalRules[3].metricsQuery: required",
        "externalRules[4]: must be a mapping",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"rules": {"default": False}}, "rules: must be a list of rules"),
        ({"externalRules": "x"}, "externalRules: must be a list of rules"),
        (
            {"rules": [{"seriesQuery": "up", "metricsQuery": "x", "name": {"matches": 5}}]},
            "rules[0].name.matches: must be a string (got 5)",
        ),
        (
            {"rules": [{"seriesQuery": "up", "metricsQuery": "x", "name": {"as": "${9}"}}]},
            "rules[0].name.as: '$9' names no capture group of name.matches",
        ),
        (
            {
                "rules": [
                    {
                        "seriesQuery": "up",
                        "metricsQuery": "x",
                        "resources": {"template": "a-<<.Resource>>"},
                    }
                ]
            },
            "rules[0].resources.template: gives 'a-namespace' for the namespace resource, "
            "not a valid Prometheus label name",
        ),
    ],
)
def test_single_problems(document: dict[str, Any], problem: str) -> None:
    problems: list[str] = []
    assert load_rules(document, problems) == []
    assert problems == [problem]
