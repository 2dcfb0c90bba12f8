"""One way to check input: bounded YAML documents, names, durations, and how input is quoted.

Every file the adapter reads (the ``--config`` file, the values file) is read by
`read_document` and parsed by `load_document`, and so is refused the same way, with the same
messages:

- a file larger than its byte limit is refused before it is read in full or parsed;
- a YAML document is refused when it holds more than `MAX_ALIASES` aliases, or when its aliases
  stand for more than `MAX_ALIAS_NODES` nodes (an alias bomb composes cheaply, but anything
  that walks it, a check or an error message, pays for every expanded node);
- a key that appears twice in one mapping is a problem (PyYAML would keep the last silently),
  and every duplicate is named at once;
- an empty document (nothing, or only comments) is a problem, never "no rules".

The name predicates (DNS-1123 labels and subdomains, metric names, Prometheus and Kubernetes
label names and values) and `parse_duration` live here too, so that each is written once.

Messages never quote unbounded input: `quote` and `shorten` cut what they show to
`QUOTE_LENGTH` characters. Problems are returned or raised as `InvalidConfiguration`; this
module does not log, and its only I/O is `read_document` reading one file (blocking: from an
event loop, call it in a worker thread).
"""

from __future__ import annotations

import contextlib
import gc
import re
import reprlib
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

from adapter.errors import InvalidConfiguration

try:  # libyaml's event parser: the same events, several times faster than PyYAML's own
    from yaml._yaml import CParser as _EventParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventParser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        def __init__(self, stream: str | bytes) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PyParser.__init__(self)


MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""Default size limit of a config or values file: far above any real configuration (the seed's
is 1 KB, a thousand targets about 500 KB), far below what stalls a reload."""

MAX_ALIASES = 100
"""Aliases (``*name``) one document may hold."""

MAX_ALIAS_NODES = 10_000
"""Nodes the aliases of one document may stand for, counted as if each were written out."""

QUOTE_LENGTH = 80
"""Characters of input a message shows at most; longer input is cut, ending in an ellipsis."""

_ELLIPSIS = "…"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {
    "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400,
}  # fmt: skip
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PROMETHEUS_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROMETHEUS_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KUBERNETES_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_KUBERNETES_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")

_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = QUOTE_LENGTH
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 4


# --- quoting ---------------------------------------------------------------------------


def shorten(text: str, limit: int = QUOTE_LENGTH) -> str:
    """`text` itself, or its first characters and an ellipsis when it is longer than `limit`."""
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def quote(value: object, limit: int = QUOTE_LENGTH) -> str:
    """`value` as Python writes it (``'text'``, ``[1, 2]``), at most `limit` characters.

    Bounded in time too: a nested value is walked only a few levels and items deep.
    """
    return shorten(repr(value[:limit]) if isinstance(value, str) else _SHORT.repr(value), limit)


# --- documents -------------------------------------------------------------------------


def read_document(path: Path, max_bytes: int) -> bytes:
    """The bytes of the file at `path`, refused with a reason when it is not a regular file
    (a directory, a FIFO), cannot be read, or is larger than `max_bytes`. Blocking."""
    source = str(path)
    try:
        status = path.stat()
        if stat.S_ISDIR(status.st_mode):
            raise InvalidConfiguration(source, ["is a directory, not a file"])
        if not stat.S_ISREG(status.st_mode):
            raise InvalidConfiguration(source, ["is not a regular file"])
        _check_size(status.st_size, max_bytes, source)
        with path.open("rb") as file:
            text = file.read(max_bytes + 1)  # the file may have grown since stat()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidConfiguration(source, [f"cannot read: {reason}"]) from exc
    _check_size(len(text), max_bytes, source)
    return text


def load_document(
    text: bytes | str, source: str, *, max_bytes: int = MAX_DOCUMENT_BYTES
) -> dict[Any, Any]:
    """The mapping a YAML document holds, or `InvalidConfiguration` naming every problem.

    Refused: more than `max_bytes` (checked before parsing), not YAML, more than one document,
    aliases past `MAX_ALIASES` or `MAX_ALIAS_NODES`, duplicate keys, an empty document, and a
    document that is not a mapping.
    """
    _check_size(len(text) if isinstance(text, bytes) else len(text.encode()), max_bytes, source)
    loader = _Loader(text)
    try:
        with collection_paused():
            document = loader.get_single_data()
    except _Refused as exc:
        raise InvalidConfiguration(source, [str(exc)]) from None
    except yaml.MarkedYAMLError as exc:
        raise InvalidConfiguration(source, [_yaml_problem(exc)]) from None
    except yaml.YAMLError as exc:
        raise InvalidConfiguration(source, [f"not valid YAML: {shorten(str(exc))}"]) from None
    except RecursionError:
        raise InvalidConfiguration(source, ["not valid YAML: nested too deeply"]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidConfiguration(source, [f"not valid YAML: {shorten(str(exc))}"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise InvalidConfiguration(source, [problem for _, problem in sorted(loader.duplicates)])
    if document is None:
        raise InvalidConfiguration(source, ["the file is empty (or holds only comments)"])
    if not isinstance(document, dict):
        raise InvalidConfiguration(source, [f"the file must be a mapping, not a {_kind(document)}"])
    return document


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a document is parsed and checked.

    Parsing allocates an object per YAML node, and every so many allocations the collector
    walks the whole heap holding the GIL: about 0.1 s per pass in a server with the model
    loaded, a dozen passes for a 4 MiB file. That stalls the event loop even though parsing
    runs in a worker thread. A parsed document refers only downwards (no reference cycles),
    so reference counting frees it all; the collector resumes afterwards, unless it was off.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _check_size(size: int, max_bytes: int, source: str) -> None:
    if size > max_bytes:
        raise InvalidConfiguration(
            source, [f"the file is {size} bytes, larger than the {max_bytes} accepted"]
        )


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """A YAML error as one line: what is wrong and where, without the document's text."""
    what = ", ".join(part for part in (exc.context, exc.problem) if part) or "cannot parse"
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"not valid YAML: {shorten(what)}{where}"


def _line(event: yaml.Event | None) -> int:
    mark = event.start_mark if event is not None else None
    return mark.line + 1 if mark is not None else 0


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return "number" if isinstance(value, int | float) else type(value).__name__


class _Refused(Exception):
    """A document refused while composing (too many aliases); the message is the problem."""


class _BoundedComposer(Composer):
    """Composes nodes, keeping each node's size as if every alias in it were written out."""

    if TYPE_CHECKING:  # from the event parser it is combined with

        def check_event(self, *choices: type[yaml.Event]) -> bool: ...
        def peek_event(self) -> yaml.Event | None: ...

    def __init__(self) -> None:
        super().__init__()
        self._sizes: dict[int, int] = {}  # id -> size, of the collections composed so far
        self._aliases = 0
        self._alias_nodes = 0
        self._collections: list[Node] = []  # each one at least once, for `release`

    def release(self) -> None:
        """Free the composed nodes one collection at a time, the document whole or not.

        Dropped at once, a large node graph is freed in one deallocation cascade that holds
        the GIL (0.7 s for 20 MB of YAML), and that stalls the event loop; emptied one by one
        here, the interpreter switches threads between them as usual.
        """
        for collection in self._collections:
            collection.value = []
        self._collections, self._sizes = [], {}

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if parent is not None and (not self._collections or self._collections[-1] is not parent):
            self._collections.append(parent)
        if self.check_event(yaml.AliasEvent):
            line = _line(self.peek_event())
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"line {line}: more than {MAX_ALIASES} aliases in one document")
            node = super().compose_node(parent, index)
            self._alias_nodes += self._sizes.get(id(node), 1)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _Refused(
                    f"line {line}: the aliases stand for more than {MAX_ALIAS_NODES} nodes"
                )
            return node
        node = super().compose_node(parent, index)
        if isinstance(node, SequenceNode):  # a scalar's size is 1, the default
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(item), 1) for item in node.value)
        elif isinstance(node, MappingNode):
            self._sizes[id(node)] = 1 + sum(
                self._sizes.get(id(key), 1) + self._sizes.get(id(value), 1)
                for key, value in node.value
            )
        return node


class _StrictConstructor(SafeConstructor):
    """PyYAML's safe types; a key twice in one mapping is recorded in `duplicates`."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[tuple[int, str]] = []  # (line, problem)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # "<<: *base" is not a key of its own
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: SafeConstructor names it
                    continue
                if duplicate:
                    line = key_node.start_mark.line + 1
                    self.duplicates.append((line, f"line {line}: key {quote(key)} appears twice"))
        return super().construct_mapping(node, deep=deep)


class _Loader(_EventParser, _BoundedComposer, _StrictConstructor, Resolver):
    """Parses events (libyaml when present), composes in Python to count what aliases stand
    for, constructs PyYAML's safe types."""

    def __init__(self, stream: str | bytes) -> None:
        _EventParser.__init__(self, stream)
        _BoundedComposer.__init__(self)
        _StrictConstructor.__init__(self)
        Resolver.__init__(self)

    # libyaml's parser composes nodes itself, in C: take the counting composer's instead.
    check_node = Composer.check_node
    get_node = Composer.get_node
    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document

    def get_single_data(self) -> Any:
        try:
            node = self.get_single_node()
            return None if node is None else self.construct_document(node)
        finally:
            self.release()


# --- names -----------------------------------------------------------------------------


def is_dns_label(name: object) -> bool:
    """Whether `name` is a DNS-1123 label (a Kubernetes namespace or object name)."""
    return isinstance(name, str) and len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None


def is_dns_subdomain(name: object) -> bool:
    """Whether `name` is a DNS-1123 subdomain (a label key's prefix, an object name)."""
    return isinstance(name, str) and len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None


def is_metric_name(name: str) -> bool:
    """Whether `name` can be a metric name in a URL path, as the HPA's validation requires."""
    return (
        bool(name)
        and name not in (".", "..")
        and not any(ch in "/%" or ch.isspace() or not ch.isprintable() for ch in name)
    )


def is_prometheus_metric_name(name: object) -> bool:
    """Whether `name` is a legal Prometheus metric name (letters, digits, ``_`` and ``:``)."""
    return isinstance(name, str) and _PROMETHEUS_METRIC.fullmatch(name) is not None


def is_label_name(name: object) -> bool:
    """Whether `name` is a legal PromQL label name."""
    return isinstance(name, str) and _PROMETHEUS_LABEL.fullmatch(name) is not None


def label_problems(selector: Mapping[str, str], where: str) -> list[str]:
    """Problems with a selector's keys as PromQL label names (empty when all are legal)."""
    return [
        f"{where}: {quote(key)} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        for key in sorted(selector, key=str)
        if not is_label_name(key)
    ]


def validate_label(key: str, value: str) -> list[str]:
    """Problems with one Kubernetes label of a series (empty when the label is valid)."""
    problems = [f"label key {quote(key)}: {problem}" for problem in label_key_problems(key)]
    problems += [
        f"label {shorten(key)}={quote(value)}: {problem}" for problem in label_value_problems(value)
    ]
    return problems


def label_key_problems(key: str) -> list[str]:
    """Problems with a Kubernetes label key, ``[DNS_SUBDOMAIN "/"] NAME``."""
    prefix, slash, name = key.rpartition("/")
    problems: list[str] = []
    if slash:
        if "/" in prefix:
            return ["a qualified name may contain at most one '/'"]
        if not prefix:
            problems.append("prefix part must be non-empty")
        elif not is_dns_subdomain(prefix):
            problems.append(
                "prefix part must be a lowercase DNS subdomain of at most 253 characters"
            )
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _KUBERNETES_NAME.fullmatch(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    """Problems with a Kubernetes label value (at most 63 characters, may be empty)."""
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _KUBERNETES_VALUE.fullmatch(value):
        return [
            "a label value must be empty or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        ]
    return []


# --- durations -------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``5m``, ``1h30m``, ``14d`` or ``1y`` (365 days).

    Go's units (``ms``, ``s``, ``m``, ``h``) plus Prometheus' ``d``, ``w`` and ``y``.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {quote(text)} (use e.g. 30s, 5m, 1h30m, 14d)")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return total
