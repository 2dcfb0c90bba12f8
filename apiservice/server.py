"""Compose and run the server: settings in, a listening HTTPS server out.

`Server` wires the parts (Kubernetes client, trust, TLS, provider, authentication,
authorization, app) and owns their lifecycle: `start` binds the listener (`apiservice.listener`,
which bounds every connection) and starts the periodic background work (certificate reload,
trust refresh, values reload); `stop` ends it within ``--shutdown-timeout``, every request in
flight answered (`apiservice.drain`). `__main__` drives it for the command line; tests drive
it in-process, on port 0.

Background work runs as guarded periodic tasks: a failing iteration is logged and retried on
the next tick with the previous material still in use; a task that dies makes /livez fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

import adapter
import forecaster
from apiservice import app as application, handlers, trust as trusting
from apiservice.authn import Authenticator
from apiservice.authz import Authorizer
from apiservice.drain import ANSWER_TIME, Drain
from apiservice.errors import ConfigError, KubeAPIError, TrustError
from apiservice.instrumentation import Instrumentation
from apiservice.kube import KubeAPI
from apiservice.listener import Listener
from apiservice.settings import Settings
from certs import errors as tls_errors, serving

logger = logging.getLogger(__name__)

STARTUP_ATTEMPTS = 5
"""Tries to read the authentication ConfigMap at start-up before giving up (1 s, 2 s, ...)."""

STOP_RESERVE = 2.0
"""Seconds of the shutdown budget kept for stopping what is not a request (at most a quarter
of the budget)."""


class Server:
    """One adapter server process's worth of parts.

    Construct it outside the event loop (or in a worker thread): it reads the kubeconfig and
    the certificate files.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        provider: adapter.ExternalMetricsProvider | None = None,
        source: adapter.HistorySource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.instrumentation = Instrumentation()
        self.kube = KubeAPI.connect(
            settings.kubernetes.kubeconfig, timeout=settings.kubernetes.request_timeout
        )
        self._static: adapter.StaticProvider | None = None
        self.refresher: adapter.Refresher | None = None
        self.store: adapter.PredictionStore | None = None
        self.grpc: Any = None  # grpc.aio.Server, when the KEDA scaler runs (optional extra)
        self.grpc_port: int | None = None
        self._config_digest = ""  # of the config last parsed, whether adopted or rejected
        self._reload_problems: dict[str, str] = {}  # file -> the problem last reported
        config_file = settings.provider.config_file
        self._own_source: adapter.PrometheusSource | None = None  # closed by stop()
        if provider is None and config_file is not None:
            config = self._read_config()
            model = forecaster.load_forecaster(settings.provider.model)
            store = adapter.PredictionStore(clock)
            if source is None:
                source = self._own_source = adapter.PrometheusSource(settings.provider.prometheus)
            self.refresher = adapter.Refresher(
                source,
                model,
                store,
                ttl=settings.provider.prediction_ttl,
                clock=clock,
                concurrency=settings.provider.query_concurrency,
                writer=self.kube,
            )
            self.refresher.configure(config)
            self.instrumentation.watch(self.refresher, store)
            self.store = store
            provider = store
        elif provider is None:
            self._static = adapter.StaticProvider(
                settings.provider.values_file, max_bytes=settings.provider.config_max_bytes
            )
            provider = self._static
        self.provider = provider
        cert_file, key_file = settings.serving.tls_cert_file, settings.serving.tls_private_key_file
        if cert_file is None or key_file is None:
            raise ConfigError(["a serving certificate and key are required"])
        self.tls = serving.ServingContext(cert_file, key_file)
        self.trust = trusting.TrustSource(
            settings.authentication,
            self.kube,
            on_change=lambda trust: self.tls.set_client_cas(trust.ca_bundle()),
        )
        self.health = handlers.Health()
        self.drain = Drain()
        self.app = application.build_app(
            provider=provider,
            predictions=self.store,
            authenticator=Authenticator(
                self.trust,
                self.kube,
                token_ttl=settings.authentication.token_cache_ttl,
                review_timeout=settings.authentication.token_webhook_timeout,
                instrumentation=self.instrumentation,
            ),
            authorizer=Authorizer(
                self.kube, settings.authorization, instrumentation=self.instrumentation
            ),
            instrumentation=self.instrumentation,
            health=self.health,
            drain=self.drain,
        )
        self._runner: web.AppRunner | None = None
        self.listener: Listener | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    async def start(self) -> None:
        """Load trust and values, bind the listener, start background work."""
        await self._load_trust()
        if self._static is not None:
            await asyncio.to_thread(self._static.load)
        self.instrumentation.serving_cert_expiry.set(self.tls.material.not_after.timestamp())
        if not self.trust.current.client_cas and self.trust.current.requestheader is None:
            logger.warning(
                "no client CA is trusted: only bearer tokens can authenticate%s",
                "" if self.kube else ", and there is no Kubernetes API to review them",
            )
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=ANSWER_TIME)
        await self._runner.setup()
        assert self._runner.server is not None
        self.listener = Listener(
            self._runner.server,
            self.tls.listener,
            self.settings.serving,
            self.instrumentation,
            access_log_class=application.AccessLogger,
            access_log=logging.getLogger("apiservice.access"),
        )
        await self.listener.start()
        self._periodic("tls-reload", self.settings.serving.tls_reload_interval, self._reload_tls)
        self._periodic(
            "trust-refresh", self.settings.authentication.refresh_interval, self._refresh_trust
        )
        if self._static is not None:
            self._periodic(
                "values-reload", self.settings.provider.reload_interval, self._reload_values
            )
        if self.store is not None and self.settings.keda.grpc_port is not None:
            await self._start_grpc(self.store)
        if self.refresher is not None:
            interval = self.settings.provider.refresh_interval
            self._tasks["refresh"] = asyncio.create_task(
                self.refresher.run(interval), name="refresh"
            )
            self._periodic(
                "config-reload", self.settings.provider.reload_interval, self._reload_config
            )
        self.health.checks["background-tasks"] = self._dead_tasks
        logger.info(
            "serving external.metrics.k8s.io/v1beta1 on https://%s:%d (Kubernetes API: %s)",
            self.settings.serving.bind_address,
            self.port,
            self.kube.description if self.kube else "none",
        )

    async def _start_grpc(self, store: adapter.PredictionStore) -> None:
        from kedascaler import scaler  # gRPC is the optional `keda` extra

        keda_settings = self.settings.keda
        tls = None
        if not keda_settings.grpc_insecure:
            tls = scaler.GrpcTLS(self.tls, keda_settings.grpc_client_ca_file)
        address = f"{keda_settings.grpc_bind_address}:{keda_settings.grpc_port}"
        self.grpc, self.grpc_port = await scaler.start_grpc(store, address, tls)
        logger.info(
            "serving KEDA's external scaler on %s:%d (%s)",
            keda_settings.grpc_bind_address,
            self.grpc_port,
            "plaintext"
            if tls is None
            else "TLS" + (", client certificates" if tls.client_ca_file else ""),
        )

    async def stop(self) -> None:
        """Stop within ``--shutdown-timeout``: refuse new connections, answer those in flight
        (503 "shutting down" for any still running near the end), then end the rest.

        Requests are given all but `STOP_RESERVE` of the budget; the reserve is for stopping
        the background work and the KEDA scaler."""
        loop = asyncio.get_running_loop()
        budget = self.settings.serving.shutdown_timeout
        deadline = loop.time() + budget - min(STOP_RESERVE, budget / 4)
        if self.listener is not None:
            self.listener.close()
            cut = await self.drain.finish(self.listener.connections, deadline)
            if cut:
                logger.warning(
                    "answered %d request(s) still running at shutdown with 503 "
                    "(--shutdown-timeout %gs)",
                    cut,
                    budget,
                )
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self.grpc is not None:
            held, self.grpc = [self.grpc], None
            await held[0].stop(grace=1.0)
            # gRPC's asyncio engine shuts down, joining a thread, when its last server object
            # is released: release it in a worker thread, not on the event loop.
            await asyncio.to_thread(held.clear)
        if self._runner is not None:
            await self._runner.cleanup()  # closes what is left; every request is answered
            self._runner = None
        if self.listener is not None:
            await self.listener.wait_closed()
            self.listener = None
        if self.kube is not None:
            self.kube.close()
        if self.refresher is not None:
            self.refresher.close()
        if self._own_source is not None:
            self._own_source.close()

    async def _load_trust(self) -> None:
        delay = 1.0
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            try:
                await self.trust.refresh()
                return
            except (KubeAPIError, TrustError) as exc:
                if attempt == STARTUP_ATTEMPTS:
                    raise
                logger.warning("cannot load authentication trust yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay *= 2

    async def _reload_tls(self) -> None:
        try:
            changed = await asyncio.to_thread(self.tls.reload_if_changed)
        except tls_errors.TLSError as exc:
            self.instrumentation.reload_failures.labels("serving-certificate").inc()
            logger.error("keeping the current serving certificate: %s", exc)
            return
        if changed:
            material = self.tls.material
            self.instrumentation.serving_cert_expiry.set(material.not_after.timestamp())
            logger.info(
                "serving a new certificate from %s (valid until %s)",
                material.cert_file,
                material.not_after.isoformat(),
            )

    async def _refresh_trust(self) -> None:
        try:
            await self.trust.refresh()
        except trusting.REFRESH_ERRORS as exc:
            self.instrumentation.reload_failures.labels("authentication-trust").inc()
            logger.error("keeping the current authentication trust: %s", exc)

    async def _reload_values(self) -> None:
        """Adopt a changed values file (read and parsed in a worker thread)."""
        assert self._static is not None
        try:
            await asyncio.to_thread(self._static.reload_if_changed)
        except adapter.InvalidConfiguration as exc:
            if self._first_report("values-file", exc):
                logger.error("keeping the current values: %s", exc)
            return
        self._reload_problems.pop("values-file", None)

    def _read_config(self) -> adapter.AdapterConfig:
        """Read and parse the config file at start (blocking); `ConfigError` lists every
        problem."""
        try:
            digest, text = self._config_text()
            config = adapter.load_config(
                text,
                str(self.settings.provider.config_file),
                max_bytes=self.settings.provider.config_max_bytes,
            )
        except adapter.InvalidConfiguration as exc:
            raise ConfigError([f"{exc.source}: {problem}" for problem in exc.problems]) from exc
        self._config_digest = digest
        return config

    async def _reload_config(self) -> None:
        """Adopt a changed config file; a bad one is reported whole and the old one kept.

        Reading, parsing and checking run in a worker thread, so a large file never stalls
        the event loop. Each distinct problem is logged and counted once, not every tick.
        """
        assert self.refresher is not None
        try:
            config = await asyncio.to_thread(self._config_if_changed)
        except adapter.InvalidConfiguration as exc:
            if self._first_report("config", exc):
                logger.error("keeping the current configuration: %s", exc)
            return
        if config is None:
            return
        self._reload_problems.pop("config", None)
        self.refresher.configure(config)
        logger.info("configuration reloaded: %d forecast targets", len(config.targets))

    def _config_if_changed(self) -> adapter.AdapterConfig | None:
        """The config file's configuration if its contents changed since they were last
        parsed, else None (blocking: reads and parses)."""
        try:
            digest, text = self._config_text()
        except adapter.InvalidConfiguration:
            self._config_digest = ""  # whatever the file holds when it is back is parsed again
            raise
        if digest == self._config_digest:
            return None
        self._config_digest = digest  # rejected contents are parsed and reported once
        return adapter.load_config(
            text,
            str(self.settings.provider.config_file),
            max_bytes=self.settings.provider.config_max_bytes,
        )

    def _config_text(self) -> tuple[str, bytes]:
        """The config file's digest and text (blocking): `InvalidConfiguration` when it is not
        a readable file or is larger than ``--config-max-bytes``."""
        path = self.settings.provider.config_file
        assert path is not None
        text = adapter.read_document(path, self.settings.provider.config_max_bytes)
        return hashlib.sha256(text).hexdigest(), text

    def _first_report(self, source: str, exc: adapter.InvalidConfiguration) -> bool:
        """Whether `exc` differs from the problem last reported for `source` (then count it)."""
        problem = str(exc)
        if self._reload_problems.get(source) == problem:
            return False
        self._reload_problems[source] = problem
        self.instrumentation.reload_failures.labels(source).inc()
        return True

    def _periodic(self, name: str, interval: float, tick: Callable[[], Awaitable[None]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await tick()
                except Exception:
                    logger.exception("background task %s failed; retrying in %.0fs", name, interval)

        self._tasks[name] = asyncio.create_task(loop(), name=name)

    def _dead_tasks(self) -> str:
        dead = [name for name, task in self._tasks.items() if task.done()]
        return f"stopped: {', '.join(dead)}" if dead else ""
