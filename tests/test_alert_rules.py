"""The Prometheus rules in deploy/rules and the PrometheusRule generated from them.

Checks that promtool accepts the rules file and that its unit tests (deploy/rules/tests)
pass; that every alert (each severity of it) has a test case where it fires and one where it
stays quiet; that each alert's firing case really depends on its expression (an alert that
can never fire must fail its tests); and that the PrometheusRule of
deploy/overlays/prometheus-rules carries exactly the rules file's groups, and renders with
the base through kustomize.

Run as a module (``python -m tests.test_alert_rules``) it rewrites that PrometheusRule from
the rules file, the one to edit. What it must not do: skip when promtool is missing (CI
installs it, and a skip would let broken rules through), or write anything when pytest
imports it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "rules" / "predictive-metrics-adapter.rules.yaml"
RULE_TESTS = ROOT / "deploy" / "rules" / "tests"
OVERLAY = ROOT / "deploy" / "overlays" / "prometheus-rules"
PROMETHEUS_RULE = OVERLAY / "prometheus-rule.yaml"
HEADER = """\
# Generated from deploy/rules/predictive-metrics-adapter.rules.yaml by
# `python -m tests.test_alert_rules`: edit the rules file, then regenerate this one
# (tests/test_alert_rules.py fails while their groups differ).
"""
NEVER_FIRES = "vector(1) < 0"
"""A valid expression with an empty result: what a broken alert is replaced with."""


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def unit_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yaml"))


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The Prometheus Operator's resource for `groups`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "predictive-metrics-adapter",
            "namespace": "predictive-metrics",
            "labels": {"app.kubernetes.io/name": "predictive-metrics-adapter"},
        },
        "spec": {"groups": groups},
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, so the generated file stays readable."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)


def render_prometheus_rule() -> str:
    body = yaml.dump(
        prometheus_rule(rule_groups()), Dumper=_BlockDumper, sort_keys=False, width=1 << 16
    )
    return HEADER + body


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not on PATH: install Debian's `prometheus` package (CI does, in "
            ".ci/run); the alert rules cannot be checked without it",
            pytrace=False,
        )
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def test_promtool_accepts_the_rules_file() -> None:
    done = run_promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    files = unit_test_files()
    assert files, f"no promtool unit tests in {RULE_TESTS}"
    done = run_promtool("test", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (done.stdout + done.stderr).count("SUCCESS") == len(files)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Per alert rule (name and severity): a case expecting it to fire, and a case at an
    evaluation time where no alert of that name may fire."""
    firing: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for path in unit_test_files():
        document = yaml.safe_load(path.read_text())
        assert [(path.parent / f).resolve() for f in document["rule_files"]] == [RULES]
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                if not expected:
                    quiet.add(check["alertname"])
                for alert in expected:
                    firing.add((check["alertname"], alert["exp_labels"]["severity"]))
    rules = {(rule["alert"], rule["labels"]["severity"]) for rule in alerts(rule_groups())}
    assert sorted(rules - firing) == [], "alerts without a firing case"
    assert sorted({name for name, _ in rules} - quiet) == [], "alerts without a quiet case"
    assert sorted(firing - rules) == [], "firing cases of alerts the rules file lacks"


def test_every_alert_has_a_summary_a_description_and_a_severity() -> None:
    for rule in alerts(rule_groups()):
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(i, id=f"{rule['alert']}-{rule['labels']['severity']}")
        for i, rule in enumerate(alerts(rule_groups()))
    ],
)
def test_an_alert_that_never_fires_fails_its_unit_tests(tmp_path: Path, index: int) -> None:
    """Replace one alert's expression with one that is never true, in a copy: the unit tests
    that mention the alert must fail."""
    groups = rule_groups()
    broken = alerts(groups)[index]
    broken["expr"] = NEVER_FIRES
    rules = tmp_path / "rules" / RULES.name
    (rules.parent / "tests").mkdir(parents=True)
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    copies = []
    for path in unit_test_files():
        if broken["alert"] in path.read_text():
            copies.append(rules.parent / "tests" / path.name)
            shutil.copyfile(path, copies[-1])
    assert copies, f"no unit test mentions {broken['alert']}"
    assert run_promtool("check", "rules", rules).returncode == 0
    done = run_promtool("test", "rules", *copies)
    assert done.returncode != 0, f"{broken['alert']} never fires, yet its tests pass"
    assert f"alertname: {broken['alert']}," in done.stdout + done.stderr


def test_the_prometheus_rule_carries_exactly_the_rules_file_groups() -> None:
    documents = [d for d in yaml.safe_load_all(PROMETHEUS_RULE.read_text()) if d]
    assert len(documents) == 1
    assert documents[0] == prometheus_rule(rule_groups()), (
        f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}: "
        "regenerate it with `.venv/bin/python -m tests.test_alert_rules`"
    )


def test_the_overlay_renders_the_base_and_the_prometheus_rule() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH; the manifests tests need it", pytrace=False)
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(out) if d]
    rules = [d for d in documents if d["kind"] == "PrometheusRule"]
    assert rules == [prometheus_rule(rule_groups())]
    assert {"Deployment", "Service", "APIService"} <= {d["kind"] for d in documents}


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
