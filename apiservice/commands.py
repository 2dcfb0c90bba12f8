"""The ``certs`` and ``local`` commands: TLS material for a cluster, and a server for a laptop.

``certs serving`` makes (or reuses) a CA and issues the serving certificate that the
aggregator will verify, for ``<service>.<namespace>.svc``; it prints the ``caBundle`` or a
complete APIService manifest. ``certs client`` mints a client certificate from a CA, and
optionally a kubeconfig around it.

``local`` is what ``make run`` runs: it keeps its material in a state directory, replays a
bundled real trace as if it were live through the whole pipeline (history, forecast,
replicas, API), and prints the ``kubectl`` commands that read the predictions. No cluster and
no Prometheus needed; ``--values-file`` serves fixed values instead.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import re
from importlib import resources
from pathlib import Path

import yaml

import adapter
from apiservice import discovery
from apiservice.settings import AuthenticationSettings, ProviderSettings, ServingSettings, Settings
from certs import errors as tls_errors, files, issuing, kubeconfig
from forecaster.series import read_csv

DEFAULT_SERVICE = "predictive-metrics-adapter"
DEFAULT_NAMESPACE = "predictive-metrics"
RENEW_BEFORE = datetime.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class ServingFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> ServingFiles:
        return cls(
            directory / "ca.crt", directory / "ca.key", directory / "tls.crt", directory / "tls.key"
        )


def load_or_create_ca(cert: Path, key: Path, common_name: str, days: int) -> issuing.Issued:
    """The CA in `cert`/`key`, created first if either file is missing."""
    if cert.exists() and key.exists():
        return files.read_issued(cert, key)
    ca = issuing.new_ca(common_name, valid_for=datetime.timedelta(days=days))
    files.write_issued(ca, cert, key)
    return ca


def issue_serving_files(
    directory: Path, names: list[str], *, days: int, ca_days: int
) -> tuple[ServingFiles, issuing.Issued]:
    paths = ServingFiles.in_dir(directory)
    ca = load_or_create_ca(paths.ca_cert, paths.ca_key, "predictive-metrics-adapter-ca", ca_days)
    serving = issuing.issue_serving(ca, names, valid_for=datetime.timedelta(days=days))
    files.write_issued(serving, paths.cert, paths.key)
    return paths, ca


def apiservice_manifest(service: str, namespace: str, port: int, ca_pem: bytes) -> str:
    """The APIService that registers this server for external.metrics.k8s.io/v1beta1."""
    document = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{discovery.VERSION}.{discovery.GROUP}"},
        "spec": {
            "group": discovery.GROUP,
            "version": discovery.VERSION,
            "service": {"name": service, "namespace": namespace, "port": port},
            "caBundle": base64.b64encode(ca_pem).decode("ascii"),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def run_certs_serving(args: argparse.Namespace) -> int:
    names = [*issuing.service_dns_names(args.service, args.namespace), *args.san]
    paths, ca = issue_serving_files(args.out_dir, names, days=args.days, ca_days=args.ca_days)
    if args.print == "ca-bundle":
        print(base64.b64encode(ca.cert_pem()).decode("ascii"))
    elif args.print == "apiservice":
        print(apiservice_manifest(args.service, args.namespace, args.port, ca.cert_pem()), end="")
    return 0


def run_certs_client(args: argparse.Namespace) -> int:
    ca = files.read_issued(args.ca_dir / "ca.crt", args.ca_dir / "ca.key")
    client = issuing.issue_client(
        ca, args.user, args.group, valid_for=datetime.timedelta(days=args.days)
    )
    out_dir = args.out_dir or args.ca_dir
    stem = file_stem(args.user)
    files.write_issued(client, out_dir / f"{stem}.crt", out_dir / f"{stem}.key")
    if args.kubeconfig is not None:
        server_ca = files.read_bytes(args.server_ca or args.ca_dir / "ca.crt")
        text = kubeconfig.render(
            server=args.server,
            ca_pem=server_ca,
            client=client,
            tls_server_name=args.tls_server_name,
        )
        files.write_pem(args.kubeconfig, text.encode(), private=True)
    return 0


def file_stem(user: str) -> str:
    """A file name for a user name such as ``system:serviceaccount:ns:name``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", user).strip("._") or "client"


@dataclasses.dataclass(frozen=True)
class LocalSetup:
    settings: Settings
    kubeconfig: Path
    source: adapter.HistorySource | None
    """The replayed demo trace when serving forecasts; None when serving fixed values."""


def prepare_local(state_dir: Path, port: int, values_file: Path | None) -> LocalSetup:
    """Certificates, an admin kubeconfig and settings for a server on this machine.

    Material is kept across runs and reissued when it expires within a day.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = ServingFiles.in_dir(state_dir)
    names = [
        "localhost",
        "127.0.0.1",
        *issuing.service_dns_names(DEFAULT_SERVICE, DEFAULT_NAMESPACE),
    ]
    if _discard_if_expiring(paths.ca_cert, paths.ca_key) or _needs_renewal(paths.cert):
        paths, _ = issue_serving_files(state_dir, names, days=30, ca_days=365)
    client_ca_cert, client_ca_key = state_dir / "client-ca.crt", state_dir / "client-ca.key"
    _discard_if_expiring(client_ca_cert, client_ca_key)
    client_ca = load_or_create_ca(client_ca_cert, client_ca_key, "local-client-ca", 365)
    admin = issuing.issue_client(
        client_ca, "local-admin", ["system:masters"], valid_for=datetime.timedelta(days=30)
    )
    config_path = state_dir / "admin.kubeconfig"
    text = kubeconfig.render(
        server=f"https://127.0.0.1:{port}",
        ca_pem=files.read_bytes(paths.ca_cert),
        client=admin,
        name="predictive-metrics-adapter-local",
    )
    files.write_pem(config_path, text.encode(), private=True)
    data = Path(str(resources.files("adapter") / "data"))
    source: adapter.HistorySource | None = None
    config_file = None
    if values_file is None:
        config_file = data / "demo-config.yaml"
        trace = read_csv(data / "demo-trace.csv")
        source = adapter.ReplaySource(trace.timestamps, trace.values, ["demo_requests_rate"])
    settings = Settings(
        serving=ServingSettings(
            bind_address="127.0.0.1",
            secure_port=port,
            tls_cert_file=paths.cert,
            tls_private_key_file=paths.key,
        ),
        authentication=AuthenticationSettings(client_ca_file=client_ca_cert, skip_lookup=True),
        provider=ProviderSettings(values_file=values_file, config_file=config_file),
    )
    return LocalSetup(settings=settings, kubeconfig=config_path, source=source)


def local_commands(setup: LocalSetup) -> list[str]:
    """The kubectl commands that show discovery and a served value."""
    base = f"kubectl --kubeconfig {setup.kubeconfig} get --raw"
    group_version = f"/apis/{discovery.GROUP_VERSION}"
    namespace = f"{group_version}/namespaces/default"
    target = "demo" if setup.source is not None else "nginx"
    commands = [f"{base} {group_version}"]
    commands.append(f"{base} '{namespace}/predicted_replicas?labelSelector=target%3D{target}'")
    if setup.source is not None:
        commands.append(f"{base} '{namespace}/predicted_requests_rate?labelSelector=target%3Ddemo'")
    return commands


def _discard_if_expiring(cert: Path, key: Path) -> bool:
    """Delete a CA that is missing, unreadable or about to expire; True if it is gone."""
    if not _needs_renewal(cert):
        return False
    cert.unlink(missing_ok=True)
    key.unlink(missing_ok=True)
    return True


def _needs_renewal(cert: Path) -> bool:
    try:
        leaf = files.read_certificates(cert)[0]
    except tls_errors.TLSError:
        return True
    return leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
