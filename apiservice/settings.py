"""The one settings object of the server, its command-line flags, and their validation.

Flags carry the names kube-apiserver gives the same options (``--secure-port``,
``--tls-cert-file``, ``--requestheader-client-ca-file``, ...), so that anyone who has
configured an aggregated API server, or copies flags from prometheus-adapter or
metrics-server, finds them where they expect. Durations are Go-style (``500ms``, ``10s``,
``1m30s``, plus ``d`` for days) and become float seconds here, at the edge.

Every setting is declared once, as a field of its group: its default, its flag (name, help,
how the text is parsed) and the check of its value stand side by side (`Flag`). `add_flags`
and `from_args` are generated from those fields, and each group's `problems()` runs the checks
of its fields plus those that relate several of them. Prometheus' flags are the exception in
one way: their defaults and checks belong to `adapter.PrometheusSettings`, and only their names
and help are declared here (`PROMETHEUS_FLAGS`).

`Settings.validate()` reports every problem at once. Nothing else in the server reads flags
or the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, Final

from adapter import MAX_DOCUMENT_BYTES, PrometheusSettings, parse_duration
from apiservice.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("plain", "json")

REVIEW_TIMEOUT = 5.0
"""Default deadline of one TokenReview or SubjectAccessReview, in seconds, queueing included.

It must end before the HPA gives up on the read it belongs to. The HPA's external metrics
client has no timeout of its own: kube-controller-manager builds it from its kubeconfig
(cmd/kube-controller-manager/app/autoscaling.go) and sets a client timeout only on the
leader-election copy of that config (cmd/kube-controller-manager/app/options/options.go,
``Config``). The read is therefore bounded by kube-apiserver's ``--request-timeout``, 60 s by
default (k8s.io/apiserver pkg/server/config.go, ``NewConfig``), under which the aggregator
proxies it. The HPA syncs every 15 s (``--horizontal-pod-autoscaler-sync-period``): 5 s for
the TokenReview plus 5 s for the SubjectAccessReview stay inside one sync and far inside the
60 s, and are half the 10 s that k8s.io/apiserver gives its delegated reviews."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one setting is given on the command line, and how its value is checked."""

    name: str
    """The flag, ``--like-this``; argparse's destination is its name with underscores."""

    help: str
    parse: Callable[[str], Any] | None
    """Turns the flag's text into the value; None for a switch (present means True)."""

    check: Callable[[Any], str | None] | None = None
    """The problem with a value (said after the flag's name), or None."""

    choices: tuple[str, ...] | None = None
    shown: str | None = None
    """The default as it would be typed (``10s`` rather than 10.0), for ``--help``."""

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


FLAG: Final = "flag"
"""The key of a field's `Flag` in its metadata."""


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _as_duration(seconds: float) -> str:
    """Seconds as they would be typed: ``10m``, ``90s``, ``500ms``."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds == int(seconds):
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _positive(seconds: float) -> str | None:
    return None if seconds > 0 else "must be positive"


def _not_negative(seconds: float) -> str | None:
    return None if seconds >= 0 else "must not be negative"


def _at_least(least: int, value: int) -> str | None:
    return None if value >= least else f"must be at least {least}"


def _port(port: int) -> str | None:
    return None if 0 <= port <= 65535 else f"{port} is not a port number"


def _readable_file(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        return f"{path} does not exist or is not a file"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable"
    return None


def _setting(default: Any, flag: Flag) -> Any:
    return dataclasses.field(default=default, metadata={FLAG: flag})


def text(name: str, default: str, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    def one_of(value: str) -> str | None:
        if choices is None or value in choices:
            return None
        return f"{value!r} is not one of {', '.join(choices)}"

    return _setting(default, Flag(name, help, str, one_of, choices, default))


def number(
    name: str, default: int | None, help: str, *, check: Callable[[Any], str | None] | None = None
) -> Any:
    shown = None if default is None else str(default)
    return _setting(default, Flag(name, help, int, check, shown=shown))


def seconds(name: str, default: float, help: str, *, may_be_zero: bool = False) -> Any:
    check = _not_negative if may_be_zero else _positive
    return _setting(default, Flag(name, help, _duration, check, shown=_as_duration(default)))


def file(name: str, help: str) -> Any:
    return _setting(None, Flag(name, help, Path, _readable_file))


def names(
    name: str,
    default: tuple[str, ...],
    help: str,
    *,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    return _setting(default, Flag(name, help, _list, check, shown=",".join(default) or "none"))


def switch(name: str, help: str) -> Any:
    return _setting(False, Flag(name, help, None))


class _Group:
    """A group of settings: its fields' checks, then `_together()` for checks across fields."""

    def problems(self) -> list[str]:
        found = []
        for field, flag in flags_of(type(self)):
            if flag.check is not None and (problem := flag.check(getattr(self, field.name))):
                found.append(f"{flag.name}: {problem}")
        return found + self._together()

    def _together(self) -> list[str]:
        return []


def flags_of(group: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], Flag]]:
    for field in dataclasses.fields(group):
        if FLAG in field.metadata:
            yield field, field.metadata[FLAG]


@dataclasses.dataclass(frozen=True)
class ServingSettings(_Group):
    """Where and how the HTTPS listener serves."""

    bind_address: str = text(
        "--bind-address",
        "0.0.0.0",  # noqa: S104 - a pod serves on all its interfaces
        "address to listen on",
    )
    """The aggregator dials the pod IP (or the Service's)."""

    secure_port: int = number("--secure-port", 6443, "HTTPS port", check=lambda p: _port(p))
    """The Service maps 443 to it; 443 itself helps on GKE private clusters."""

    tls_cert_file: Path | None = file(
        "--tls-cert-file", "serving certificate (PEM), with the DNS SAN <service>.<namespace>.svc"
    )
    tls_private_key_file: Path | None = file("--tls-private-key-file", "its key (PEM)")

    tls_reload_interval: float = seconds(
        "--tls-reload-interval", 10.0, "how often the certificate files are checked for rotation"
    )
    """Secret volumes give no file events, so the contents are compared. 10 s: a rotated
    certificate is served well within cert-manager's renewal margin, at the cost of two small
    reads."""

    max_connections: int = number(
        "--max-connections",
        1024,
        "connections open at once, TLS handshakes included; more are closed on arrival",
        check=lambda n: _at_least(1, n),
    )
    """One more is closed as soon as it is accepted, before any TLS work. An idle connection
    holds about 40 KiB, so the default bounds them to about 40 MiB of the Deployment's 600Mi
    request, while the clients the adapter has (kube-apiserver's aggregator, KEDA, probes, a
    scraper) use a few dozen at most."""

    tls_handshake_timeout: float = seconds(
        "--tls-handshake-timeout", 10.0, "time a client has to complete the TLS handshake"
    )
    """Also bounds the closing handshake. 10 s, like Go's HTTP clients (asyncio's own default
    is 60 s)."""

    request_header_timeout: float = seconds(
        "--request-header-timeout", 10.0, "time a client has to send a whole request head"
    )
    """From the TLS handshake for the first request on a connection, from its first byte for
    later ones. A slow or silent client is cut. Every client of the adapter sends its head in
    one packet."""

    idle_connection_timeout: float = seconds(
        "--idle-connection-timeout", 90.0, "a kept-alive connection with no request is closed"
    )
    """90 s is Go's idle timeout for the clients' pooled connections (and kube-apiserver's
    own), so the server does not close a connection a client is about to reuse."""

    shutdown_timeout: float = seconds(
        "--shutdown-timeout",
        20.0,
        "time from SIGTERM to exit; requests still running near its end are answered 503",
    )
    """New connections are refused at once and idle ones closed; in-flight requests finish.
    Keep it below the pod's ``terminationGracePeriodSeconds`` (30 s in deploy/)."""

    def _together(self) -> list[str]:
        if self.tls_cert_file is None or self.tls_private_key_file is None:
            return [
                "--tls-cert-file and --tls-private-key-file are required (TLS is always on; "
                "`predictive-metrics-adapter certs serving` makes a pair)"
            ]
        return []


CONNECTION_FLAGS: Final = frozenset(
    {
        "--max-connections",
        "--tls-handshake-timeout",
        "--request-header-timeout",
        "--idle-connection-timeout",
        "--shutdown-timeout",
    }
)
"""The flags that bound connections and shutdown, which `local` takes too."""


@dataclasses.dataclass(frozen=True)
class AuthenticationSettings(_Group):
    """Who may be believed: front proxy, client certificates, bearer tokens."""

    client_ca_file: Path | None = file(
        "--client-ca-file", "CA bundle of users' client certificates (CN = user, O = groups)"
    )
    """Default: the ``client-ca-file`` of ConfigMap
    kube-system/extension-apiserver-authentication."""

    requestheader_client_ca_file: Path | None = file(
        "--requestheader-client-ca-file", "CA bundle of the front proxy's client certificate"
    )
    """Only a certificate from it, with an allowed CN, makes the X-Remote-* headers trusted.
    Default: from the ConfigMap above, together with the names and headers below."""

    requestheader_allowed_names: tuple[str, ...] = names(
        "--requestheader-allowed-names",
        (),
        "common names the front-proxy certificate may have; empty allows any from that CA",
    )
    requestheader_username_headers: tuple[str, ...] = names(
        "--requestheader-username-headers",
        ("X-Remote-User",),
        "headers that carry the user name",
        check=lambda headers: None if headers else "at least one header is needed",
    )
    requestheader_group_headers: tuple[str, ...] = names(
        "--requestheader-group-headers", ("X-Remote-Group",), "headers that carry the groups"
    )
    requestheader_extra_headers_prefix: tuple[str, ...] = names(
        "--requestheader-extra-headers-prefix",
        ("X-Remote-Extra-",),
        "prefixes of the headers that carry extra user information",
    )
    requestheader_uid_headers: tuple[str, ...] = names(
        "--requestheader-uid-headers", (), "headers that carry the user's UID"
    )

    skip_lookup: bool = switch(
        "--authentication-skip-lookup", "never read the authentication ConfigMap"
    )

    refresh_interval: float = seconds(
        "--authentication-refresh-interval",
        30.0,
        "how often the CA files and the authentication ConfigMap are re-read",
    )
    """So that a rotated front-proxy CA is trusted without a restart. kube-apiserver rewrites
    the ConfigMap when its flags change; 30 s bounds how long a rotation can fail requests."""

    token_cache_ttl: float = seconds(
        "--authentication-token-webhook-cache-ttl",
        10.0,
        "how long a TokenReview answer is reused",
        may_be_zero=True,
    )
    """kube-apiserver's default for webhooks."""

    token_webhook_timeout: float = seconds(
        "--authentication-token-webhook-timeout",
        REVIEW_TIMEOUT,
        "deadline of one TokenReview, queueing included; past it the request is a 503",
    )
    """See `REVIEW_TIMEOUT`."""


@dataclasses.dataclass(frozen=True)
class AuthorizationSettings(_Group):
    """What an authenticated user may do: SubjectAccessReview, cached."""

    always_allow_paths: tuple[str, ...] = names(
        "--authorization-always-allow-paths",
        ("/healthz", "/readyz", "/livez"),
        "paths served to anyone (a trailing * matches a prefix)",
        check=lambda paths: next(
            (f"{path!r} must start with '/'" for path in paths if not path.startswith("/")), None
        ),
    )
    """The kubelet's probes carry no credentials."""

    always_allow_groups: tuple[str, ...] = ("system:masters",)
    """Groups allowed everything without a SubjectAccessReview (the aggregator's own checks
    run as system:masters). Not a flag."""

    authorized_ttl: float = seconds(
        "--authorization-webhook-cache-authorized-ttl",
        10.0,
        "how long an allowed decision is reused",
        may_be_zero=True,
    )
    unauthorized_ttl: float = seconds(
        "--authorization-webhook-cache-unauthorized-ttl",
        10.0,
        "how long a denied decision is reused",
        may_be_zero=True,
    )
    webhook_timeout: float = seconds(
        "--authorization-webhook-timeout",
        REVIEW_TIMEOUT,
        "deadline of one SubjectAccessReview, queueing included; past it the request is a 503",
    )
    """See `REVIEW_TIMEOUT`."""


@dataclasses.dataclass(frozen=True)
class KubernetesSettings(_Group):
    """How to reach the Kubernetes API (for reviews and the authentication ConfigMap)."""

    kubeconfig: Path | None = file("--kubeconfig", "kubeconfig (default: in-cluster)")
    """Default: the in-cluster service account, if running in a pod; else none, and then only
    system:masters client certificates are authorized."""

    request_timeout: float = seconds(
        "--kubernetes-request-timeout", 10.0, "deadline of a ConfigMap read or write"
    )
    """Reviews have their own, shorter deadlines (``--authentication-token-webhook-timeout``,
    ``--authorization-webhook-timeout``)."""


@dataclasses.dataclass(frozen=True)
class ProviderSettings(_Group):
    """Where served values come from: forecasts (``--config``) or fixed values."""

    config_file: Path | None = file("--config", "rules and forecast targets (YAML)")
    """See `adapter.config`; re-read when it changes."""

    values_file: Path | None = file("--values-file", "fixed values instead (YAML)")
    """See `adapter.static`; re-read when it changes."""

    reload_interval: float = seconds(
        "--values-reload-interval", 5.0, "how often the config or values file is checked"
    )

    refresh_interval: float = seconds(
        "--refresh-interval", 60.0, "how often every forecast is refreshed"
    )
    """The HPA syncs every 15 s; forecasts on a 5-minute grid change meaningfully once a
    minute at most."""

    prediction_ttl: float = seconds(
        "--prediction-ttl", 600.0, "how long a prediction is served after it was made"
    )
    """Past that, 503. Long enough to ride out a short Prometheus outage (nine missed
    refreshes), short enough that the HPA never acts on a forecast made for another part of
    the day."""

    model: Path | None = _setting(
        None,
        Flag(
            "--model",
            "forecaster model folder (default: the pretrained model in the package)",
            Path,
            lambda path: None if path is None or path.is_dir() else f"{path} is not a model folder",
        ),
    )

    query_concurrency: int = number(
        "--query-concurrency",
        8,
        "Prometheus requests in flight at once during a refresh",
        check=lambda n: _at_least(1, n),
    )

    config_max_bytes: int = number(
        "--config-max-bytes",
        MAX_DOCUMENT_BYTES,
        "largest --config or --values-file accepted, in bytes",
        check=lambda n: _at_least(1, n),
    )
    """A larger file is refused before it is parsed, and the values served before are kept:
    far above any real configuration (a thousand targets are about 500 KB), far below what
    stalls a reload."""

    prometheus: PrometheusSettings = PrometheusSettings()
    """Flags in `PROMETHEUS_FLAGS`; checked by `PrometheusSettings.problems` when forecasting."""

    def _together(self) -> list[str]:
        found = []
        if self.config_file is not None and self.values_file is not None:
            found.append("--config and --values-file: give one source of values, not both")
        if self.prediction_ttl <= self.refresh_interval:
            found.append(
                f"--prediction-ttl ({self.prediction_ttl:g}s) must exceed --refresh-interval "
                f"({self.refresh_interval:g}s), or every prediction expires before the next"
            )
        if self.config_file is not None:
            found += self.prometheus.problems()
        return found


PROMETHEUS_FLAGS: Final = {
    "url": ("--prometheus-url", "base URL of Prometheus (or Thanos, Mimir, VictoriaMetrics)"),
    "ca_file": ("--prometheus-ca-file", "CA bundle of Prometheus' serving certificate"),
    "insecure_skip_verify": (
        "--prometheus-insecure-skip-verify",
        "do not verify Prometheus' certificate",
    ),
    "client_cert_file": ("--prometheus-client-tls-cert-file", "client certificate (PEM)"),
    "client_key_file": ("--prometheus-client-tls-key-file", "its key (PEM)"),
    "token_file": ("--prometheus-token-file", "bearer token file, read at each request"),
    "username": ("--prometheus-username", "basic auth user"),
    "password_file": ("--prometheus-password-file", "basic auth password file"),
    "timeout": ("--prometheus-timeout", "deadline of one Prometheus request"),
    "retries": ("--prometheus-retries", "attempts after the first on errors worth retrying"),
}
"""Flag and help of each `adapter.PrometheusSettings` field (its default and checks are there)."""


def _prometheus_flags() -> Iterator[tuple[str, Flag, Any]]:
    parsers: dict[Any, Callable[[str], Any]] = {
        "str": str,
        "str | None": str,
        "Path | None": Path,
        "float": _duration,
        "int": int,
    }
    for field in dataclasses.fields(PrometheusSettings):
        name, help = PROMETHEUS_FLAGS[field.name]
        default: Any = field.default
        parse = None if field.type == "bool" else parsers[field.type]
        shown = _as_duration(float(default)) if parse is _duration else default
        flag = Flag(name, help, parse, shown=None if shown is None else str(shown))
        yield field.name, flag, default


@dataclasses.dataclass(frozen=True)
class KedaSettings(_Group):
    """KEDA's external scaler (gRPC), for clusters where KEDA owns the external metrics API."""

    grpc_port: int | None = number(
        "--keda-grpc-port",
        None,
        "serve KEDA's external scaler (gRPC) on this port; 0 picks a free one",
        check=lambda p: None if p is None else _port(p),
    )
    """None (the default) serves none."""

    grpc_bind_address: str = text(
        "--keda-grpc-bind-address",
        "0.0.0.0",  # noqa: S104 - a pod serves on all its interfaces
        "address of the gRPC listener",
    )

    grpc_insecure: bool = switch(
        "--keda-grpc-insecure", "serve gRPC without TLS (by default: the serving certificate)"
    )

    grpc_client_ca_file: Path | None = file(
        "--keda-grpc-client-ca-file",
        "require client certificates signed by this CA (KEDA's tlsClientCert)",
    )

    def _together(self) -> list[str]:
        if self.grpc_insecure and self.grpc_client_ca_file is not None:
            return ["--keda-grpc-insecure and --keda-grpc-client-ca-file exclude each other"]
        return []


@dataclasses.dataclass(frozen=True)
class LogSettings(_Group):
    level: str = text(
        "--log-level",
        "info",
        "debug logs every request (the access log); info start-up, reloads and errors",
        choices=LOG_LEVELS,
    )
    format: str = text(
        "--log-format", "plain", "plain for people, json for log pipelines", choices=LOG_FORMATS
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the server is told, grouped by concern."""

    serving: ServingSettings = ServingSettings()
    authentication: AuthenticationSettings = AuthenticationSettings()
    authorization: AuthorizationSettings = AuthorizationSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    provider: ProviderSettings = ProviderSettings()
    keda: KedaSettings = KedaSettings()
    logs: LogSettings = LogSettings()

    def groups(self) -> list[_Group]:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]

    def validate(self) -> Settings:
        problems = [problem for group in self.groups() for problem in group.problems()]
        if self.keda.grpc_port is not None and self.provider.config_file is None:
            problems.append("--keda-grpc-port serves forecast targets: it needs --config")
        if problems:
            raise ConfigError(problems)
        return self


_TITLES: Final = {
    "serving": "serving",
    "authentication": "authentication",
    "authorization": "authorization",
    "kubernetes": "kubernetes",
    "provider": "values",
    "keda": "KEDA external scaler",
    "logs": "logging",
}


def add_flags(parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
    """Every setting's flag (or those named in `only`), in argument groups."""
    for field in dataclasses.fields(Settings):
        group = parser.add_argument_group(_TITLES[field.name])
        for setting, flag in flags_of(type(field.default)):
            if only is None or flag.name in only:
                _add(group, flag, setting.default)
        if field.name == "provider":
            prometheus = parser.add_argument_group("prometheus")
            for _, flag, default in _prometheus_flags():
                if only is None or flag.name in only:
                    _add(prometheus, flag, default)


def from_args(
    args: argparse.Namespace, base: Settings | None = None, only: Collection[str] | None = None
) -> Settings:
    """`base` (default: the defaults) with what the flags of `add_flags` say."""
    given = vars(args)
    settings = base or Settings()

    def changes(pairs: Iterator[tuple[str, Flag]]) -> dict[str, Any]:
        return {
            name: given[flag.dest]
            for name, flag in pairs
            if flag.dest in given and (only is None or flag.name in only)
        }

    updated = {}
    for field in dataclasses.fields(Settings):
        group = getattr(settings, field.name)
        pairs = ((f.name, flag) for f, flag in flags_of(type(group)))
        updated[field.name] = dataclasses.replace(group, **changes(pairs))
    provider = updated["provider"]
    prometheus = changes((name, flag) for name, flag, _ in _prometheus_flags())
    updated["provider"] = dataclasses.replace(
        provider, prometheus=dataclasses.replace(provider.prometheus, **prometheus)
    )
    return Settings(**updated)


def _add(group: argparse._ArgumentGroup, flag: Flag, default: Any) -> None:
    if flag.parse is None:
        group.add_argument(flag.name, action="store_true", help=flag.help)
        return
    shown = f" (default: {flag.shown})" if flag.shown is not None else ""
    metavar = {_duration: "DURATION", Path: "PATH", _list: "A,B", int: "N"}.get(flag.parse)
    group.add_argument(
        flag.name,
        type=flag.parse,
        default=default,
        choices=flag.choices,
        metavar=None if flag.choices else metavar or "TEXT",
        help=flag.help.replace("%", "%%") + shown,
    )
