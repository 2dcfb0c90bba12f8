"""A kubeconfig that carries a minted client certificate, for local use.

`kubectl --kubeconfig <file> get --raw ...` and the official Python client can then talk to the
adapter directly, authenticating with the certificate (CN = user, O = groups). Only the file
format lives here; which certificate to mint is the caller's choice.
"""

from __future__ import annotations

import base64

import yaml

from certs import issuing


def render(
    *,
    server: str,
    ca_pem: bytes,
    client: issuing.Issued,
    name: str = "predictive-metrics-adapter",
    tls_server_name: str | None = None,
) -> str:
    """The kubeconfig text: one cluster, one user, one current context, all named `name`."""
    cluster: dict[str, str] = {
        "server": server,
        "certificate-authority-data": _b64(ca_pem),
    }
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem()),
                    "client-key-data": _b64(client.key_pem()),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
