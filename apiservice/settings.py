"""The one settings object of the server, its command-line flags, and their validation.

Flags carry the names kube-apiserver gives the same options (``--secure-port``,
``--tls-cert-file``, ``--requestheader-client-ca-file``, ...), so that anyone who has
configured an aggregated API server, or copies flags from prometheus-adapter or
metrics-server, finds them where they expect. Durations are Go-style (``500ms``, ``10s``,
``1m30s``, plus ``d`` for days) and become float seconds here, at the edge.

`Settings.validate()` reports every problem at once. Nothing else in the server reads flags
or the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

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
class ServingSettings:
    """Where and how the HTTPS listener serves."""

    bind_address: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    """Address to listen on; the aggregator dials the pod IP (or the Service's)."""

    secure_port: int = 6443
    """HTTPS port. The Service maps 443 to it; 443 itself helps on GKE private clusters."""

    tls_cert_file: Path | None = None
    """Serving certificate (PEM). Must carry the DNS SAN ``<service>.<namespace>.svc``."""

    tls_private_key_file: Path | None = None
    """Key of the serving certificate (PEM)."""

    tls_reload_interval: float = 10.0
    """Seconds between checks of the certificate files for rotation (Secret volumes give no
    file events, so the contents are compared). Default 10 s: a rotated certificate is
    served well within cert-manager's renewal margin, at the cost of two small reads."""

    max_connections: int = 1024
    """Connections open at once, those still in the TLS handshake included. One more is
    closed as soon as it is accepted, before any TLS work. An idle connection holds about
    40 KiB, so the default bounds them to about 40 MiB of the Deployment's 600Mi request,
    while the clients the adapter has (kube-apiserver's aggregator, KEDA, probes, a scraper)
    use a few dozen at most."""

    tls_handshake_timeout: float = 10.0
    """Seconds a client has to complete the TLS handshake after connecting, and to answer
    the closing handshake; then the connection is cut. Default 10 s, like Go's HTTP clients
    (asyncio's own default is 60 s)."""

    request_header_timeout: float = 10.0
    """Seconds a client has to send a whole request head: from the TLS handshake for the
    first request on a connection, from its first byte for later ones. A slow or silent
    client is cut. Every client of the adapter sends its head in one packet."""

    idle_connection_timeout: float = 90.0
    """Seconds a connection is kept open without a request, after the previous answer.
    Default 90 s, Go's idle timeout for the clients' pooled connections (and kube-apiserver's
    own), so the server does not close a connection a client is about to reuse."""

    shutdown_timeout: float = 20.0
    """Seconds from SIGTERM to exit. New connections are refused at once and idle ones
    closed; in-flight requests finish, and those still running when the time is nearly up
    are answered 503 "shutting down". Keep it below the pod's
    ``terminationGracePeriodSeconds`` (30 s in deploy/)."""

    def problems(self) -> list[str]:
        found = []
        if not 0 <= self.secure_port <= 65535:
            found.append(f"--secure-port: {self.secure_port} is not a port number")
        if self.tls_cert_file is None or self.tls_private_key_file is None:
            found.append(
                "--tls-cert-file and --tls-private-key-file are required (TLS is always on; "
                "`predictive-metrics-adapter certs serving` makes a pair)"
            )
        found += _file_problems("--tls-cert-file", self.tls_cert_file)
        found += _file_problems("--tls-private-key-file", self.tls_private_key_file)
        if self.tls_reload_interval <= 0:
            found.append("--tls-reload-interval: must be positive")
        if self.max_connections < 1:
            found.append("--max-connections: must be at least 1")
        for flag, seconds in (
            ("--tls-handshake-timeout", self.tls_handshake_timeout),
            ("--request-header-timeout", self.request_header_timeout),
            ("--idle-connection-timeout", self.idle_connection_timeout),
            ("--shutdown-timeout", self.shutdown_timeout),
        ):
            if seconds <= 0:
                found.append(f"{flag}: must be positive")
        return found


@dataclasses.dataclass(frozen=True)
class AuthenticationSettings:
    """Who may be believed: front proxy, client certificates, bearer tokens."""

    client_ca_file: Path | None = None
    """CA bundle for users who present their own client certificate (CN = user, O = groups).
    Default: the ``client-ca-file`` of ConfigMap kube-system/extension-apiserver-authentication."""

    requestheader_client_ca_file: Path | None = None
    """CA bundle that signs the front proxy's (kube-apiserver's) client certificate. Only a
    certificate from it, with an allowed CN, makes the X-Remote-* headers trusted. Default:
    from the ConfigMap above, together with the names and headers below."""

    requestheader_allowed_names: tuple[str, ...] = ()
    """Common names the front-proxy certificate may have; empty allows any from that CA."""

    requestheader_username_headers: tuple[str, ...] = ("X-Remote-User",)
    requestheader_group_headers: tuple[str, ...] = ("X-Remote-Group",)
    requestheader_extra_headers_prefix: tuple[str, ...] = ("X-Remote-Extra-",)
    requestheader_uid_headers: tuple[str, ...] = ()

    skip_lookup: bool = False
    """Do not read the ConfigMap; use only the files given by flags."""

    refresh_interval: float = 30.0
    """Seconds between re-reads of the CA files and the ConfigMap, so that a rotated
    front-proxy CA is trusted without a restart. kube-apiserver rewrites the ConfigMap when its
    flags change; 30 s bounds how long a rotation can fail requests."""

    token_cache_ttl: float = 10.0
    """Seconds a TokenReview answer is reused (kube-apiserver's default for webhooks)."""

    token_webhook_timeout: float = REVIEW_TIMEOUT
    """Seconds a bearer token may wait for its TokenReview, turn in the queue included; past
    that the request is a 503 (see `REVIEW_TIMEOUT`)."""

    def problems(self) -> list[str]:
        found = _file_problems("--client-ca-file", self.client_ca_file)
        found += _file_problems("--requestheader-client-ca-file", self.requestheader_client_ca_file)
        if not self.requestheader_username_headers:
            found.append("--requestheader-username-headers: at least one header is needed")
        if self.refresh_interval <= 0:
            found.append("--authentication-refresh-interval: must be positive")
        if self.token_cache_ttl < 0:
            found.append("--authentication-token-webhook-cache-ttl: must not be negative")
        if self.token_webhook_timeout <= 0:
            found.append("--authentication-token-webhook-timeout: must be positive")
        return found


@dataclasses.dataclass(frozen=True)
class AuthorizationSettings:
    """What an authenticated user may do: SubjectAccessReview, cached."""

    always_allow_paths: tuple[str, ...] = ("/healthz", "/readyz", "/livez")
    """Paths served without authentication or authorization (kubelet probes). A trailing
    ``*`` matches a prefix."""

    always_allow_groups: tuple[str, ...] = ("system:masters",)
    """Groups allowed everything without a SubjectAccessReview (the aggregator's own checks
    run as system:masters)."""

    authorized_ttl: float = 10.0
    """Seconds an "allowed" decision is reused."""

    unauthorized_ttl: float = 10.0
    """Seconds a "denied" decision is reused."""

    webhook_timeout: float = REVIEW_TIMEOUT
    """Seconds a request may wait for its SubjectAccessReview, turn in the queue included;
    past that the request is a 503 (see `REVIEW_TIMEOUT`)."""

    def problems(self) -> list[str]:
        found = [
            f"--authorization-always-allow-paths: {path!r} must start with '/'"
            for path in self.always_allow_paths
            if not path.startswith("/")
        ]
        if self.authorized_ttl < 0 or self.unauthorized_ttl < 0:
            found.append("authorization cache TTLs must not be negative")
        if self.webhook_timeout <= 0:
            found.append("--authorization-webhook-timeout: must be positive")
        return found


@dataclasses.dataclass(frozen=True)
class KubernetesSettings:
    """How to reach the Kubernetes API (for reviews and the authentication ConfigMap)."""

    kubeconfig: Path | None = None
    """Kubeconfig file. Default: the in-cluster service account, if running in a pod; else
    none, and then only system:masters client certificates are authorized."""

    request_timeout: float = 10.0
    """Seconds before a ConfigMap read or write gives up. Reviews have their own, shorter
    deadlines (``--authentication-token-webhook-timeout``, ``--authorization-webhook-timeout``)."""

    def problems(self) -> list[str]:
        found = _file_problems("--kubeconfig", self.kubeconfig)
        if self.request_timeout <= 0:
            found.append("--kubernetes-request-timeout: must be positive")
        return found


@dataclasses.dataclass(frozen=True)
class ProviderSettings:
    """Where served values come from: forecasts (``--config``) or fixed values."""

    config_file: Path | None = None
    """Rules and forecast targets (see `adapter.config`); re-read when it changes."""

    values_file: Path | None = None
    """YAML file of fixed values (see `adapter.static`); re-read when it changes."""

    reload_interval: float = 5.0
    """Seconds between checks of the config or values file for changes."""

    refresh_interval: float = 60.0
    """Seconds between refreshes of every forecast. The HPA syncs every 15 s; forecasts on a
    5-minute grid change meaningfully once a minute at most."""

    prediction_ttl: float = 600.0
    """Seconds a prediction is served after it was made; past that, 503. Long enough to ride
    out a short Prometheus outage (nine missed refreshes), short enough that the HPA never
    acts on a forecast made for another part of the day."""

    model: Path | None = None
    """Forecaster model folder (default: the pretrained model in the package)."""

    query_concurrency: int = 8
    """Prometheus requests in flight at once during a refresh."""

    config_max_bytes: int = MAX_DOCUMENT_BYTES
    """Largest config or values file accepted, in bytes (default 4 MiB). A larger file is
    refused before it is parsed, and the values served before are kept: far above any real
    configuration (a thousand targets are about 500 KB), far below what stalls a reload."""

    prometheus: PrometheusSettings = PrometheusSettings()

    def problems(self) -> list[str]:
        found = _file_problems("--values-file", self.values_file)
        found += _file_problems("--config", self.config_file)
        if self.config_file is not None and self.values_file is not None:
            found.append("--config and --values-file: give one source of values, not both")
        if self.reload_interval <= 0:
            found.append("--values-reload-interval: must be positive")
        if self.refresh_interval <= 0:
            found.append("--refresh-interval: must be positive")
        if self.prediction_ttl <= self.refresh_interval:
            found.append(
                f"--prediction-ttl ({self.prediction_ttl:g}s) must exceed --refresh-interval "
                f"({self.refresh_interval:g}s), or every prediction expires before the next"
            )
        if self.model is not None and not self.model.is_dir():
            found.append(f"--model: {self.model} is not a model folder")
        if self.query_concurrency < 1:
            found.append("--query-concurrency: must be at least 1")
        if self.config_max_bytes < 1:
            found.append("--config-max-bytes: must be at least 1")
        if self.config_file is not None:
            found += self.prometheus.problems()
        return found


@dataclasses.dataclass(frozen=True)
class KedaSettings:
    """KEDA's external scaler (gRPC), for clusters where KEDA owns the external metrics API."""

    grpc_port: int | None = None
    """Port of the gRPC external scaler; None (the default) serves none, 0 picks a free one."""

    grpc_bind_address: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces

    grpc_insecure: bool = False
    """Serve gRPC without TLS. By default it uses the serving certificate, like the API."""

    grpc_client_ca_file: Path | None = None
    """Require client certificates signed by this CA (KEDA's ``tlsClientCert``)."""

    def problems(self) -> list[str]:
        found = _file_problems("--keda-grpc-client-ca-file", self.grpc_client_ca_file)
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            found.append(f"--keda-grpc-port: {self.grpc_port} is not a port number")
        if self.grpc_insecure and self.grpc_client_ca_file is not None:
            found.append("--keda-grpc-insecure and --keda-grpc-client-ca-file exclude each other")
        return found


@dataclasses.dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    """debug logs every request (the access log); info logs start-up, reloads and errors."""

    format: str = "plain"
    """plain for people, json for log pipelines."""

    def problems(self) -> list[str]:
        found = []
        if self.level not in LOG_LEVELS:
            found.append(f"--log-level: {self.level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.format not in LOG_FORMATS:
            found.append(f"--log-format: {self.format!r} is not one of {', '.join(LOG_FORMATS)}")
        return found


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

    def validate(self) -> Settings:
        problems = (
            self.serving.problems()
            + self.authentication.problems()
            + self.authorization.problems()
            + self.kubernetes.problems()
            + self.provider.problems()
            + self.keda.problems()
            + self.logs.problems()
        )
        if self.keda.grpc_port is not None and self.provider.config_file is None:
            problems.append("--keda-grpc-port serves forecast targets: it needs --config")
        if problems:
            raise ConfigError(problems)
        return self


def add_connection_flags(group: argparse._ActionsContainer) -> None:
    """The flags that bound connections and shutdown (`serve` and `local` both take them)."""
    group.add_argument("--max-connections", type=int, default=ServingSettings.max_connections)
    group.add_argument("--tls-handshake-timeout", type=_duration, default="10s")
    group.add_argument("--request-header-timeout", type=_duration, default="10s")
    group.add_argument("--idle-connection-timeout", type=_duration, default="90s")
    group.add_argument("--shutdown-timeout", type=_duration, default="20s")


def connection_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`ServingSettings` fields from the flags of `add_connection_flags`."""
    return {
        "max_connections": args.max_connections,
        "tls_handshake_timeout": args.tls_handshake_timeout,
        "request_header_timeout": args.request_header_timeout,
        "idle_connection_timeout": args.idle_connection_timeout,
        "shutdown_timeout": args.shutdown_timeout,
    }


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The `serve` flags, named as kube-apiserver names them where it has the option."""
    serving = parser.add_argument_group("serving")
    serving.add_argument("--bind-address", default=ServingSettings.bind_address)
    serving.add_argument("--secure-port", type=int, default=ServingSettings.secure_port)
    serving.add_argument("--tls-cert-file", type=Path)
    serving.add_argument("--tls-private-key-file", type=Path)
    serving.add_argument("--tls-reload-interval", type=_duration, default="10s")
    add_connection_flags(serving)

    authn = parser.add_argument_group("authentication")
    authn.add_argument("--client-ca-file", type=Path)
    authn.add_argument("--requestheader-client-ca-file", type=Path)
    authn.add_argument("--requestheader-allowed-names", type=_list, default=[])
    authn.add_argument("--requestheader-username-headers", type=_list, default=["X-Remote-User"])
    authn.add_argument("--requestheader-group-headers", type=_list, default=["X-Remote-Group"])
    authn.add_argument(
        "--requestheader-extra-headers-prefix", type=_list, default=["X-Remote-Extra-"]
    )
    authn.add_argument("--requestheader-uid-headers", type=_list, default=[])
    authn.add_argument("--authentication-skip-lookup", action="store_true")
    authn.add_argument("--authentication-refresh-interval", type=_duration, default="30s")
    authn.add_argument("--authentication-token-webhook-cache-ttl", type=_duration, default="10s")
    authn.add_argument("--authentication-token-webhook-timeout", type=_duration, default="5s")

    authz = parser.add_argument_group("authorization")
    authz.add_argument(
        "--authorization-always-allow-paths", type=_list, default=["/healthz", "/readyz", "/livez"]
    )
    authz.add_argument(
        "--authorization-webhook-cache-authorized-ttl", type=_duration, default="10s"
    )
    authz.add_argument(
        "--authorization-webhook-cache-unauthorized-ttl", type=_duration, default="10s"
    )
    authz.add_argument("--authorization-webhook-timeout", type=_duration, default="5s")

    kube = parser.add_argument_group("kubernetes")
    kube.add_argument("--kubeconfig", type=Path)
    kube.add_argument("--kubernetes-request-timeout", type=_duration, default="10s")

    provider = parser.add_argument_group("values")
    provider.add_argument("--config", type=Path, help="rules and forecast targets (YAML)")
    provider.add_argument("--values-file", type=Path, help="fixed values instead (YAML)")
    provider.add_argument("--values-reload-interval", type=_duration, default="5s")
    provider.add_argument("--refresh-interval", type=_duration, default="1m")
    provider.add_argument("--prediction-ttl", type=_duration, default="10m")
    provider.add_argument("--model", type=Path, help="forecaster model folder")
    provider.add_argument("--query-concurrency", type=int, default=8)
    provider.add_argument(
        "--config-max-bytes",
        type=int,
        default=ProviderSettings.config_max_bytes,
        help="largest --config or --values-file accepted, in bytes",
    )

    prom = parser.add_argument_group("prometheus")
    prom.add_argument("--prometheus-url", default=PrometheusSettings.url)
    prom.add_argument("--prometheus-ca-file", type=Path)
    prom.add_argument("--prometheus-insecure-skip-verify", action="store_true")
    prom.add_argument("--prometheus-client-tls-cert-file", type=Path)
    prom.add_argument("--prometheus-client-tls-key-file", type=Path)
    prom.add_argument("--prometheus-token-file", type=Path)
    prom.add_argument("--prometheus-username")
    prom.add_argument("--prometheus-password-file", type=Path)
    prom.add_argument("--prometheus-timeout", type=_duration, default="10s")
    prom.add_argument("--prometheus-retries", type=int, default=3)

    keda = parser.add_argument_group("KEDA external scaler")
    keda.add_argument("--keda-grpc-port", type=int)
    keda.add_argument("--keda-grpc-bind-address", default=KedaSettings.grpc_bind_address)
    keda.add_argument("--keda-grpc-insecure", action="store_true")
    keda.add_argument("--keda-grpc-client-ca-file", type=Path)

    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    logs.add_argument("--log-format", default="plain", choices=LOG_FORMATS)


def from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        serving=ServingSettings(
            bind_address=args.bind_address,
            secure_port=args.secure_port,
            tls_cert_file=args.tls_cert_file,
            tls_private_key_file=args.tls_private_key_file,
            tls_reload_interval=args.tls_reload_interval,
            **connection_settings(args),
        ),
        authentication=AuthenticationSettings(
            client_ca_file=args.client_ca_file,
            requestheader_client_ca_file=args.requestheader_client_ca_file,
            requestheader_allowed_names=tuple(args.requestheader_allowed_names),
            requestheader_username_headers=tuple(args.requestheader_username_headers),
            requestheader_group_headers=tuple(args.requestheader_group_headers),
            requestheader_extra_headers_prefix=tuple(args.requestheader_extra_headers_prefix),
            requestheader_uid_headers=tuple(args.requestheader_uid_headers),
            skip_lookup=args.authentication_skip_lookup,
            refresh_interval=args.authentication_refresh_interval,
            token_cache_ttl=args.authentication_token_webhook_cache_ttl,
            token_webhook_timeout=args.authentication_token_webhook_timeout,
        ),
        authorization=AuthorizationSettings(
            always_allow_paths=tuple(args.authorization_always_allow_paths),
            authorized_ttl=args.authorization_webhook_cache_authorized_ttl,
            unauthorized_ttl=args.authorization_webhook_cache_unauthorized_ttl,
            webhook_timeout=args.authorization_webhook_timeout,
        ),
        kubernetes=KubernetesSettings(
            kubeconfig=args.kubeconfig, request_timeout=args.kubernetes_request_timeout
        ),
        provider=ProviderSettings(
            config_file=args.config,
            values_file=args.values_file,
            reload_interval=args.values_reload_interval,
            refresh_interval=args.refresh_interval,
            prediction_ttl=args.prediction_ttl,
            model=args.model,
            query_concurrency=args.query_concurrency,
            config_max_bytes=args.config_max_bytes,
            prometheus=PrometheusSettings(
                url=args.prometheus_url,
                ca_file=args.prometheus_ca_file,
                insecure_skip_verify=args.prometheus_insecure_skip_verify,
                client_cert_file=args.prometheus_client_tls_cert_file,
                client_key_file=args.prometheus_client_tls_key_file,
                token_file=args.prometheus_token_file,
                username=args.prometheus_username,
                password_file=args.prometheus_password_file,
                timeout=args.prometheus_timeout,
                retries=args.prometheus_retries,
            ),
        ),
        keda=KedaSettings(
            grpc_port=args.keda_grpc_port,
            grpc_bind_address=args.keda_grpc_bind_address,
            grpc_insecure=args.keda_grpc_insecure,
            grpc_client_ca_file=args.keda_grpc_client_ca_file,
        ),
        logs=LogSettings(level=args.log_level, format=args.log_format),
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _file_problems(flag: str, path: Path | None) -> list[str]:
    if path is None:
        return []
    if not path.is_file():
        return [f"{flag}: {path} does not exist or is not a file"]
    if not os.access(path, os.R_OK):
        return [f"{flag}: {path} is not readable"]
    return []
