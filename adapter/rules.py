"""prometheus-adapter discovery rules: load them strictly, name discovered series, render queries.

The adapter accepts the `rules` and `externalRules` sections of a prometheus-adapter
configuration unchanged (as the seed ships it, e.g. Kapacity's `prometheus-metrics-config.yaml`).
This module answers, for one rule:

- which series to discover: `series_selector` (the rule's ``seriesQuery``);
- which exposed metric names the discovered series names produce: `metric_names`
  (``seriesFilters``, then ``name.matches`` / ``name.as``);
- which PromQL query fetches one metric for a namespace and a label selector: `render_query`
  (``metricsQuery`` with ``<<.Series>>``, ``<<.LabelMatchers>>`` and ``<<.GroupBy>>``).

Semantics follow kubernetes-sigs/prometheus-adapter (docs/config.md, docs/externalmetrics.md):

- filters and ``name.matches`` search the series name unanchored; ``is`` keeps the names that
  match, ``isNot`` the names that do not; a name that ``name.matches`` does not match is dropped;
- an empty ``name.matches`` means ``.*``; an empty ``name.as`` means ``$0`` without capture
  groups, ``$1`` with one, and is required with more; the exposed name is ``name.as`` expanded
  as Go's ``regexp.Expand`` does (``$1``, ``${1}``, ``$name``, ``${name}``, ``$$`` for ``$``;
  ``$1_x`` names a group called ``1_x``, so write ``${1}_x``);
- the namespace matcher uses the label that ``resources`` maps to the namespace resource (an
  override, else the template rendered for ``Resource=namespace``); external rules add it unless
  ``resources.namespaced`` is false, other rules whenever such a label exists.

Where this module is stricter than prometheus-adapter, on purpose: unknown fields, any
placeholder other than the three above (and other than ``<<.Group>>`` / ``<<.Resource>>`` in
``resources.template``), ``name.as`` references to groups that do not exist, and namespaced
external rules without a namespace label are configuration problems. ``<<.GroupBy>>`` lists the
selector's label names (prometheus-adapter leaves it empty for external metrics).

This module must NOT do I/O (no Prometheus calls, no file reads, no logging), must NOT raise for
configuration problems (it appends them, each with its YAML path, to the caller's list), and
does not judge top-level keys other than `rules` and `externalRules`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from adapter.validation import is_label_name, label_problems, quote, shorten

_PLACEHOLDER = re.compile(r"<<(.*?)>>", re.DOTALL)
_QUERY_FIELDS = frozenset({"Series", "LabelMatchers", "GroupBy"})
_TEMPLATE_FIELDS = frozenset({"Group", "Resource"})
_ADVANCED_QUERY_FIELDS = frozenset({"LabelValuesByName", "GroupBySlice"})
_RULE_FIELDS = ("seriesQuery", "seriesFilters", "resources", "name", "metricsQuery")
_UNSUPPORTED_RULE_FIELDS = frozenset({"labelValueReplacements"})
_FILTER_FIELDS = ("is", "isNot")
_RESOURCE_FIELDS = ("template", "overrides", "namespaced")
_OVERRIDE_FIELDS = ("group", "resource")
_NAME_FIELDS = ("matches", "as")
_NAMESPACE_RESOURCES = frozenset({"namespace", "namespaces"})
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclasses.dataclass(frozen=True)
class SeriesFilter:
    """One ``seriesFilters`` entry: ``is`` (keep matching names) or ``isNot`` (drop them)."""

    pattern: re.Pattern[str]
    negated: bool

    def passes(self, series_name: str) -> bool:
        return (self.pattern.search(series_name) is None) == self.negated


@dataclasses.dataclass(frozen=True)
class ResourceOverride:
    """One ``resources.overrides`` entry: a Prometheus label naming a Kubernetes resource."""

    label: str
    group: str
    resource: str


@dataclasses.dataclass(frozen=True)
class MetricRule:
    """One valid discovery rule; `namespace_label` is None when it adds no namespace matcher."""

    index: int
    external: bool
    series_query: str
    series_filters: tuple[SeriesFilter, ...]
    namespace_label: str | None
    name_matches: re.Pattern[str]
    name_as: str
    metrics_query: str

    @property
    def where(self) -> str:
        """The rule's YAML path, for messages: ``rules[0]`` or ``externalRules[1]``."""
        return f"{'externalRules' if self.external else 'rules'}[{self.index}]"


def load_rules(document: Mapping[str, Any], problems: list[str]) -> list[MetricRule]:
    """The valid rules of `rules` and `externalRules`; every problem is appended to `problems`.

    A rule with any problem is left out of the result. Other top-level keys (such as
    prometheus-adapter's `resourceRules`) are ignored here; judging them is the caller's job.
    """
    rules: list[MetricRule] = []
    for section, external in (("rules", False), ("externalRules", True)):
        items = document.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(f"{section}: must be a list of rules")
            continue
        for index, item in enumerate(items):
            rule = _load_rule(item, index, external, problems)
            if rule is not None:
                rules.append(rule)
    return rules


def series_selector(rule: MetricRule) -> str:
    """The series selector that discovers the rule's series (its ``seriesQuery``)."""
    return rule.series_query


def metric_names(rule: MetricRule, series_names: Iterable[str]) -> dict[str, str]:
    """Exposed metric name -> series name, for the series that pass the filters and match.

    Names that expand to the empty string are dropped. When several series expose the same
    name, the greatest series name wins (prometheus-adapter keeps the last one Prometheus lists,
    and Prometheus lists series sorted).
    """
    exposed: dict[str, str] = {}
    for series_name in sorted(set(series_names)):
        if not all(series_filter.passes(series_name) for series_filter in rule.series_filters):
            continue
        match = rule.name_matches.search(series_name)
        if match is None:
            continue
        name = _expand(rule.name_as, match)
        if name:
            exposed[name] = series_name
    return dict(sorted(exposed.items()))


def render_query(
    rule: MetricRule, series_name: str, namespace: str | None, selector: Mapping[str, str]
) -> str:
    """The rule's ``metricsQuery`` for one series, namespace (None or "" for none) and selector.

    The selector holds exact label matches; its keys must be legal label names (check them with
    `label_problems` when loading), else `ValueError`.
    """
    invalid = label_problems(selector, "selector")
    if invalid:
        raise ValueError("; ".join(invalid))
    matchers = sorted(selector.items())
    if rule.namespace_label is not None and namespace:
        matchers.append((rule.namespace_label, namespace))
        matchers.sort(key=lambda matcher: matcher[0])  # stable: the selector's own comes first
    fields = {
        "Series": series_name,
        "LabelMatchers": ",".join(f"{label}={_quote(value)}" for label, value in matchers),
        "GroupBy": ",".join(sorted(selector)),
    }
    return _PLACEHOLDER.sub(lambda found: fields[_field(found.group(1))], rule.metrics_query)


# --- loading -----------------------------------------------------------------------------


def _load_rule(item: Any, index: int, external: bool, problems: list[str]) -> MetricRule | None:
    where = f"{'externalRules' if external else 'rules'}[{index}]"
    if not isinstance(item, Mapping):
        problems.append(f"{where}: must be a mapping")
        return None
    before = len(problems)
    for key in item:
        if key in _UNSUPPORTED_RULE_FIELDS:
            problems.append(f"{where}: unsupported field {quote(key)}")
        elif key not in _RULE_FIELDS:
            problems.append(f"{where}: unknown field {quote(key)}")
    series_query = _required_text(item, "seriesQuery", where, problems)
    series_filters = _load_filters(item.get("seriesFilters"), f"{where}.seriesFilters", problems)
    namespace_label = _load_resources(
        item.get("resources"), f"{where}.resources", external, problems
    )
    naming = _load_name(item.get("name"), f"{where}.name", problems)
    metrics_query = _required_text(item, "metricsQuery", where, problems)
    if metrics_query is not None:
        problems.extend(_template_problems(metrics_query, _QUERY_FIELDS, f"{where}.metricsQuery"))
    if len(problems) > before:
        return None
    assert series_query is not None
    assert metrics_query is not None
    assert series_filters is not None
    assert naming is not None
    return MetricRule(
        index=index,
        external=external,
        series_query=series_query,
        series_filters=series_filters,
        namespace_label=namespace_label,
        name_matches=naming[0],
        name_as=naming[1],
        metrics_query=metrics_query,
    )


def _required_text(
    item: Mapping[Any, Any], key: str, where: str, problems: list[str]
) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        problems.append(f"{where}.{key}: required")
        return None
    if not isinstance(value, str):
        problems.append(f"{where}.{key}: must be a string (got {quote(value)})")
        return None
    return value


def _optional_text(
    section: Mapping[Any, Any], key: str, where: str, problems: list[str]
) -> str | None:
    """The string at `key`; None when absent, null or empty (a problem when not a string)."""
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(f"{where}.{key}: must be a string (got {quote(value)})")
        return None
    return value


def _unknown_fields(
    section: Mapping[Any, Any], known: Iterable[str], where: str, problems: list[str]
) -> None:
    allowed = frozenset(known)
    problems.extend(f"{where}: unknown field {quote(key)}" for key in section if key not in allowed)


def _compile(pattern: str, where: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error as exc:
        problems.append(f"{where}: invalid regex ({shorten(str(exc))})")
        return None


def _load_filters(value: Any, where: str, problems: list[str]) -> tuple[SeriesFilter, ...] | None:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"{where}: must be a list of {{is: regex}} or {{isNot: regex}}")
        return None
    before = len(problems)
    filters: list[SeriesFilter] = []
    for index, entry in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{at}: must be a mapping with 'is' or 'isNot'")
            continue
        _unknown_fields(entry, _FILTER_FIELDS, at, problems)
        keep = _optional_text(entry, "is", at, problems)
        drop = _optional_text(entry, "isNot", at, problems)
        if keep is not None and drop is not None:
            problems.append(f"{at}: set either 'is' or 'isNot', not both")
        elif keep is None and drop is None:
            if all(entry.get(key) in (None, "") for key in _FILTER_FIELDS):
                problems.append(f"{at}: needs a non-empty 'is' or 'isNot'")
        else:
            key, pattern = ("is", keep) if keep is not None else ("isNot", drop)
            assert pattern is not None
            compiled = _compile(pattern, f"{at}.{key}", problems)
            if compiled is not None:
                filters.append(SeriesFilter(compiled, negated=key == "isNot"))
    return tuple(filters) if len(problems) == before else None


def _load_resources(value: Any, where: str, external: bool, problems: list[str]) -> str | None:
    """The label mapped to the namespace resource, or None (also when invalid: see `problems`)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must be a mapping")
        return None
    before = len(problems)
    _unknown_fields(value, _RESOURCE_FIELDS, where, problems)
    template = _optional_text(value, "template", where, problems)
    template_label: str | None = None
    if template is not None:
        template_problems = _template_problems(template, _TEMPLATE_FIELDS, f"{where}.template")
        problems.extend(template_problems)
        if not template_problems:
            template_label = _PLACEHOLDER.sub(
                lambda found: {"Group": "", "Resource": "namespace"}[_field(found.group(1))],
                template,
            )
            if not is_label_name(template_label):
                problems.append(
                    f"{where}.template: gives {quote(template_label)} for the namespace resource, "
                    "not a valid Prometheus label name"
                )
    overrides = _load_overrides(value.get("overrides"), f"{where}.overrides", problems)
    namespaced = value.get("namespaced")
    if namespaced is not None and not external:
        problems.append(f"{where}.namespaced: applies to externalRules only")
    elif namespaced is not None and not isinstance(namespaced, bool):
        problems.append(f"{where}.namespaced: must be true or false (got {quote(namespaced)})")
    if len(problems) > before or overrides is None:
        return None
    namespace_labels = [
        override.label
        for override in overrides
        if not override.group and override.resource.lower() in _NAMESPACE_RESOURCES
    ]
    if len(namespace_labels) > 1:
        problems.append(
            f"{where}.overrides: more than one label maps to the namespace resource "
            f"({', '.join(shorten(label) for label in namespace_labels)})"
        )
        return None
    namespace_label = namespace_labels[0] if namespace_labels else template_label
    if external and namespaced is False:
        namespace_label = None
    elif external and namespace_label is None:
        problems.append(
            f"{where}: the rule is namespaced but maps no label to the namespace resource "
            '(add template: "<<.Resource>>" or overrides: {namespace: {resource: namespace}}, '
            "or set namespaced: false)"
        )
        return None
    return namespace_label


def _load_overrides(
    value: Any, where: str, problems: list[str]
) -> tuple[ResourceOverride, ...] | None:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must map label names to {{group, resource}}")
        return None
    before = len(problems)
    overrides: list[ResourceOverride] = []
    for label, target in value.items():
        at = f"{where}.{shorten(str(label))}"
        if not is_label_name(label):
            problems.append(f"{at}: {quote(label)} is not a valid Prometheus label name")
            continue
        if not isinstance(target, Mapping):
            problems.append(f"{at}: must be a mapping {{group, resource}}")
            continue
        _unknown_fields(target, _OVERRIDE_FIELDS, at, problems)
        resource = _required_text(target, "resource", at, problems)
        group = _optional_text(target, "group", at, problems)
        if resource is not None:
            overrides.append(ResourceOverride(label, group or "", resource))
    return tuple(overrides) if len(problems) == before else None


def _load_name(value: Any, where: str, problems: list[str]) -> tuple[re.Pattern[str], str] | None:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must be a mapping with 'matches' and 'as'")
        return None
    before = len(problems)
    _unknown_fields(value, _NAME_FIELDS, where, problems)
    matches = _optional_text(value, "matches", where, problems)
    name_as = _optional_text(value, "as", where, problems)
    pattern = _compile(".*" if matches is None else matches, f"{where}.matches", problems)
    if pattern is None or len(problems) > before:
        return None
    if name_as is None:
        if pattern.groups > 1:
            problems.append(f"{where}.as: required when name.matches has several capture groups")
            return None
        name_as = f"${pattern.groups}"
    for piece, is_reference in _as_pieces(name_as):
        if is_reference and _group_index(piece, pattern) is None:
            hint = ""
            if piece[0].isdecimal() and not piece.isdecimal():
                digits = piece[: len(piece) - len(piece.lstrip("0123456789"))]
                hint = (
                    f"; Go reads '${shorten(piece)}' as a group named {quote(piece)}, "
                    f"write '${{{shorten(digits)}}}{shorten(piece[len(digits) :])}'"
                )
            problems.append(
                f"{where}.as: '${shorten(piece)}' names no capture group of name.matches{hint}"
            )
    if len(problems) > before:
        return None
    return pattern, name_as


def _field(action: str) -> str:
    """The field name of a ``<<.Field>>`` action (spaces inside the delimiters are allowed)."""
    inner = action.strip()
    return inner[1:] if inner.startswith(".") else inner


def _template_problems(template: str, fields: frozenset[str], where: str) -> list[str]:
    problems: list[str] = []
    for found in _PLACEHOLDER.finditer(template):
        inner = found.group(1).strip()
        if inner.startswith(".") and inner[1:] in fields:
            continue
        if inner.startswith(".") and inner[1:] in _ADVANCED_QUERY_FIELDS:
            known = ", ".join(f"<<.{field}>>" for field in sorted(fields))
            problems.append(
                f"{where}: unsupported placeholder {shorten(found.group(0))} (use {known})"
            )
        else:
            problems.append(f"{where}: unknown placeholder {shorten(found.group(0))}")
    if "<<" in _PLACEHOLDER.sub("\x00", template):
        problems.append(f"{where}: unclosed placeholder ('<<' without '>>')")
    return problems


# --- naming ------------------------------------------------------------------------------


def _as_pieces(template: str) -> list[tuple[str, bool]]:
    """(text, is_reference) pieces of a ``name.as`` template, by Go's ``regexp.Expand`` rules.

    ``$$`` is a literal ``$``; ``$name`` takes the longest run of letters, digits and ``_``;
    ``${name}`` needs its closing brace; any other ``$`` is literal text.
    """
    pieces: list[tuple[str, bool]] = []
    literal: list[str] = []
    position = 0
    while position < len(template):
        char = template[position]
        if char != "$":
            literal.append(char)
            position += 1
            continue
        if template.startswith("$$", position):
            literal.append("$")
            position += 2
            continue
        reference = _reference_at(template, position + 1)
        if reference is None:
            literal.append("$")
            position += 1
            continue
        pieces.append(("".join(literal), False))
        literal = []
        pieces.append((reference[0], True))
        position = reference[1]
    pieces.append(("".join(literal), False))
    return [piece for piece in pieces if piece[1] or piece[0]]


def _reference_at(template: str, start: int) -> tuple[str, int] | None:
    """The group name after a ``$`` at `start`, and where the reference ends; None if malformed."""
    braced = template.startswith("{", start)
    begin = end = start + braced
    while end < len(template) and _is_name_char(template[end]):
        end += 1
    if end == begin:
        return None
    name = template[begin:end]
    if braced:
        if not template.startswith("}", end):
            return None
        end += 1
    return name, end


def _is_name_char(char: str) -> bool:
    return char.isalpha() or char.isdecimal() or char == "_"


def _group_index(name: str, pattern: re.Pattern[str]) -> int | None:
    """The capture group a reference names: a number without leading zeros, else a group name."""
    if name.isascii() and name.isdigit():
        if name != "0" and name.startswith("0"):
            return None
        number = int(name)
        return number if number <= pattern.groups else None
    return pattern.groupindex.get(name)


def _expand(template: str, match: re.Match[str]) -> str:
    out: list[str] = []
    for piece, is_reference in _as_pieces(template):
        if not is_reference:
            out.append(piece)
            continue
        index = _group_index(piece, match.re)
        if index is not None:
            out.append(match.group(index) or "")
    return "".join(out)


# --- rendering ---------------------------------------------------------------------------


def _quote(value: str) -> str:
    """`value` as a PromQL double-quoted string."""
    escaped = (
        _ESCAPES.get(char)
        or (f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
        for char in value
    )
    return '"' + "".join(escaped) + '"'
