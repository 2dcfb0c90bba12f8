"""Throwaway PKI for tests, minted with the project's own `certs` package.

One CA per role, as in a real cluster: the serving CA (what the aggregator puts in caBundle),
the client CA (users with their own certificates), the front-proxy CA (kube-apiserver's proxy
client certificate), and an unknown CA nobody trusts.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from certs import files, issuing

DAY = datetime.timedelta(days=1)
SERVICE, NAMESPACE = "predictive-metrics-adapter", "predictive-metrics"
FRONT_PROXY_NAME = "front-proxy-client"


@dataclasses.dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class PKI:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.serving_ca = self._ca("serving-ca")
        self.client_ca = self._ca("client-ca")
        self.front_proxy_ca = self._ca("front-proxy-ca")
        self.unknown_ca = self._ca("unknown-ca")
        names = ["localhost", "127.0.0.1", *issuing.service_dns_names(SERVICE, NAMESPACE)]
        self.serving = self.write(
            "serving", issuing.issue_serving(self.serving_ca, names, valid_for=DAY)
        )
        self.admin = self.client("admin", ["system:masters"])
        self.alice = self.client("alice", ["developers"])
        self.front_proxy = self.client(FRONT_PROXY_NAME, [], ca=self.front_proxy_ca)
        self.rogue_proxy = self.client("not-the-proxy", [], ca=self.front_proxy_ca)
        self.stranger = self.client(
            "admin", ["system:masters"], ca=self.unknown_ca, stem="stranger"
        )
        past = datetime.datetime.now(datetime.UTC) - 10 * DAY
        self.expired = self.write(
            "expired",
            issuing.issue_client(
                self.client_ca, "admin", ["system:masters"], valid_for=DAY, now=past
            ),
        )

    def path(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def client(
        self, user: str, groups: list[str], *, ca: issuing.Issued | None = None, stem: str = ""
    ) -> Pair:
        issued = issuing.issue_client(ca or self.client_ca, user, groups, valid_for=DAY)
        return self.write(stem or user, issued)

    def write(self, stem: str, issued: issuing.Issued) -> Pair:
        pair = Pair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        files.write_issued(issued, pair.cert, pair.key)
        return pair

    def _ca(self, stem: str) -> issuing.Issued:
        ca = issuing.new_ca(stem, valid_for=10 * DAY)
        files.write_issued(ca, self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        return ca
