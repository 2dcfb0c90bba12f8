"""Command line: ``predictive-metrics-adapter {serve,local,certs,replay}``; the composition root.

This is the only module that exits the process: 0 on a clean stop, 1 when the server cannot
start (TLS material, Kubernetes API) or could not stop within ``--shutdown-timeout``, 2 for
invalid settings (every problem listed).

On SIGTERM or SIGINT the server stops within ``--shutdown-timeout`` (see `Server.stop`). A
worker thread still blocked in a call (a hung Kubernetes API, say) does not hold the exit
back: the process leaves without waiting for it, and a watchdog ends it at the deadline
should the stop itself hang.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import adapter
import forecaster
from apiservice import commands, logs, settings as settings_module
from apiservice.errors import ConfigError, KubeAPIError, TrustError
from apiservice.server import Server
from apiservice.settings import Settings
from certs import errors as tls_errors

logger = logging.getLogger("apiservice")

LOCAL_FLAGS = settings_module.CONNECTION_FLAGS | {"--secure-port", "--log-level"}
"""The `serve` flags `local` takes too (the rest it sets up itself)."""

THREAD_PATIENCE = 0.5
"""Seconds given to worker threads to finish after the server stopped, before exiting
without them."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    sys.exit(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predictive-metrics-adapter",
        description="Serve predicted replicas and load as external metrics for the HPA and KEDA.",
    )
    sub = parser.add_subparsers(required=True, metavar="command")

    serve = sub.add_parser("serve", help="run the aggregated API server")
    settings_module.add_flags(serve)
    serve.set_defaults(run=_serve)

    local = sub.add_parser(
        "local", help="run on this machine with generated certificates and demo values"
    )
    local.add_argument("--state-dir", type=Path, default=Path(".local"))
    local.add_argument("--values-file", type=Path, help="fixed values instead of the demo")
    settings_module.add_flags(local, only=LOCAL_FLAGS)
    local.set_defaults(run=_local)

    certs = sub.add_parser("certs", help="make TLS material").add_subparsers(
        required=True, metavar="kind"
    )
    serving = certs.add_parser(
        "serving", help="a CA (reused if present) and a serving certificate for the Service"
    )
    serving.add_argument("--out-dir", type=Path, default=Path("."))
    serving.add_argument("--service", default=commands.DEFAULT_SERVICE)
    serving.add_argument("--namespace", default=commands.DEFAULT_NAMESPACE)
    serving.add_argument("--san", action="append", default=[], help="extra DNS name or IP")
    serving.add_argument("--days", type=int, default=365)
    serving.add_argument("--ca-days", type=int, default=3650)
    serving.add_argument("--port", type=int, default=443, help="Service port, for the manifest")
    serving.add_argument(
        "--print", choices=("ca-bundle", "apiservice", "none"), default="ca-bundle"
    )
    serving.set_defaults(run=_guarded(commands.run_certs_serving))

    client = certs.add_parser("client", help="a client certificate (and kubeconfig) from a CA")
    client.add_argument("--ca-dir", type=Path, default=Path("."))
    client.add_argument("--user", required=True)
    client.add_argument("--group", action="append", default=[])
    client.add_argument("--out-dir", type=Path)
    client.add_argument("--days", type=int, default=365)
    client.add_argument("--kubeconfig", type=Path, help="also write a kubeconfig here")
    client.add_argument("--server", default="https://127.0.0.1:6443")
    client.add_argument("--server-ca", type=Path, help="CA of the server (default: the CA)")
    client.add_argument("--tls-server-name")
    client.set_defaults(run=_guarded(commands.run_certs_client))

    _add_replay(sub)
    return parser


# --- replay: the what-if tool (`adapter.whatif`); here only its flags and the call ---------

CSV_FLAGS = {
    "csv": "--csv",
    "days": "--days",
    "step": "--step",
    "per_pod": "--per-pod",
    "lead_time": "--lead-time",
    "history": "--history",
    "min_replicas": "--min-replicas",
    "max_replicas": "--max-replicas",
    "quantile": "--quantile",
    "objective": "--objective",
    "headroom": "--headroom",
}
"""Destination -> flag of the options of a CSV replay (refused with --config)."""
PROMETHEUS_DESTS = {
    field: flag.removeprefix("--").replace("-", "_")
    for field, (flag, _) in settings_module.PROMETHEUS_FLAGS.items()
}
CONFIG_FLAGS = {
    "config": "--config",
    "target": "--target",
    "begin": "--from",
    "end": "--to",
    **{
        dest: settings_module.PROMETHEUS_FLAGS[field][0] for field, dest in PROMETHEUS_DESTS.items()
    },
}
"""Destination -> flag of the options of a configured target's replay (refused with --csv)."""


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay",
        help="what-if: replay a load history under the reactive HPA, the predictive setup "
        "and an oracle",
        description="Replay a load history through a simulated HPA (autoscaling/v2 defaults) "
        "under the reactive HPA, the predictive setup as the adapter serves it, and an oracle; "
        "print what each cost and how often each was short of capacity. Input: --csv with the "
        "target's flags, or --config with --target, --from, --to and Prometheus.",
    )
    csv_input = replay.add_argument_group("a CSV of ts,value rows (unix seconds, evenly spaced)")
    csv_input.add_argument("--csv", type=Path, metavar="FILE")
    csv_input.add_argument(
        "--days", type=float, help="replay the last DAYS; what is before is history (default: 3)"
    )
    csv_input.add_argument(
        "--step", type=_seconds, metavar="DURATION", help="grid the rows to this step"
    )
    csv_input.add_argument(
        "--per-pod", type=float, metavar="LOAD", help="load one pod serves at full use (required)"
    )
    csv_input.add_argument(
        "--lead-time",
        type=_seconds,
        metavar="DURATION",
        help="the target's lead time (default: 10m)",
    )
    csv_input.add_argument(
        "--history",
        type=_seconds,
        metavar="DURATION",
        help="history a forecast reads (default: 14d)",
    )
    csv_input.add_argument("--min-replicas", type=int, metavar="N", help="default: 1")
    csv_input.add_argument("--max-replicas", type=int, metavar="N", help="default: 200")
    csv_input.add_argument(
        "--quantile",
        type=float,
        help="the manual quantile (default: 0.9; with --objective, what serves until a tuning "
        "has history enough)",
    )
    csv_input.add_argument(
        "--objective",
        type=_objective,
        metavar="PERCENT",
        help="tune the sizing for at most PERCENT (e.g. 1%%) of the time above capacity",
    )
    csv_input.add_argument(
        "--headroom",
        type=_headroom,
        metavar="PERCENT",
        help="with --objective: count the time above (100 - PERCENT)%% of capacity instead",
    )
    configured = replay.add_argument_group("a configured target's signal in Prometheus")
    configured.add_argument("--config", type=Path, metavar="FILE")
    configured.add_argument("--target", metavar="NAMESPACE/NAME")
    configured.add_argument(
        "--from", dest="begin", type=_time, metavar="TIME", help="RFC 3339 or unix seconds"
    )
    configured.add_argument("--to", dest="end", type=_time, metavar="TIME")
    settings_module.add_flags(
        replay, only={flag for flag, _ in settings_module.PROMETHEUS_FLAGS.values()}
    )
    replay.set_defaults(**dict.fromkeys(PROMETHEUS_DESTS.values()))  # None: not given
    policies = replay.add_argument_group("policies and output")
    policies.add_argument(
        "--startup",
        type=_seconds,
        metavar="DURATION",
        help="from ordering a pod to its being ready (default: the lead time)",
    )
    policies.add_argument(
        "--reactive-utilization",
        type=float,
        default=0.7,
        metavar="U",
        help="the reactive HPA's (and the oracle's) target share of a pod (default: 0.7)",
    )
    policies.add_argument(
        "--safety-net",
        type=float,
        metavar="U",
        help="add the reactive metric at U as a second metric of the predictive HPA",
    )
    policies.add_argument(
        "--sweep",
        action="store_true",
        help="also replay every setting and the reactive HPA at 0.7..0.3: the frontier",
    )
    policies.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="load and ready capacity (1600x900 px)"
    )
    policies.add_argument(
        "--sweep-plot", type=Path, metavar="FILE.png", help="the frontier (default: FILE-sweep.png)"
    )
    policies.add_argument("--model", type=Path, metavar="DIR", help="a model folder")
    replay.set_defaults(run=functools.partial(_replay, replay))


def _seconds(text: str) -> int:
    try:
        return round(adapter.parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time(text: str) -> int:
    try:
        return adapter.parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _objective(text: str) -> adapter.Objective:
    try:
        return adapter.parse_objective(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _headroom(text: str) -> float:
    try:
        return adapter.parse_headroom(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _replay(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Parse what the flags say into an input and options, then replay; every problem of
    the flags is one argparse error (exit 2), a problem of the data one line (exit 2)."""
    given = {dest for dest in (*CSV_FLAGS, *CONFIG_FLAGS) if getattr(args, dest) is not None}
    problems = []
    source: adapter.CsvInput | adapter.PrometheusInput | None = None
    if args.csv is not None and args.config is not None:
        problems.append("give --csv or --config, not both")
    elif args.csv is not None:
        problems += [
            f"{CONFIG_FLAGS[d]} applies to --config, not --csv"
            for d in sorted(given & CONFIG_FLAGS.keys())
        ]
        if args.per_pod is None:
            problems.append("--csv needs --per-pod (the load one pod serves at full use)")
        fields = {d: getattr(args, d) for d in given & CSV_FLAGS.keys() if d != "csv"}
        headroom = fields.pop("headroom", None)
        if headroom is not None and args.objective is None:
            problems.append("--headroom needs --objective")
        elif headroom is not None:
            fields["objective"] = dataclasses.replace(args.objective, headroom=headroom)
        fields.setdefault("per_pod", 1.0)  # a stand-in, so that the other flags are checked
        source = adapter.CsvInput(args.csv, **fields)
    elif args.config is not None:
        problems += [
            f"{CSV_FLAGS[d]} applies to --csv, not --config"
            for d in sorted(given & CSV_FLAGS.keys())
        ]
        prometheus = dataclasses.replace(
            adapter.PrometheusSettings(),
            **{
                field: getattr(args, dest)
                for field, dest in PROMETHEUS_DESTS.items()
                if getattr(args, dest) is not None
            },
        )
        missing = [CONFIG_FLAGS[d] for d in ("target", "begin", "end") if getattr(args, d) is None]
        if missing:
            problems.append(f"--config needs {', '.join(missing)}")
            problems += prometheus.problems()
        else:
            source = adapter.PrometheusInput(
                args.config, args.target, prometheus, args.begin, args.end
            )
    else:
        problems.append(
            "give --csv FILE (with --per-pod) or --config FILE (with --target, --from, --to)"
        )
    if args.sweep_plot is not None and not args.sweep:
        problems.append("--sweep-plot needs --sweep")
    options = adapter.ReplayOptions(
        startup=args.startup,
        reactive_utilisation=args.reactive_utilization,
        safety_net=args.safety_net,
        sweep=args.sweep,
        model=args.model,
    )
    problems += options.problems() + (source.problems() if source is not None else [])
    if problems or source is None:
        parser.error("; ".join(problems))
    try:
        outcome = adapter.run_replay(source, options)
        print(outcome.text, end="", flush=True)
        if args.plot is not None:
            width, height = adapter.plot_replay(args.plot, outcome.report)
            print(f"wrote {args.plot} ({width}x{height} px)")
        sweep_plot = args.sweep_plot
        if sweep_plot is None and args.plot is not None:
            sweep_plot = args.plot.with_name(f"{args.plot.stem}-sweep{args.plot.suffix or '.png'}")
        if outcome.sweep is not None and sweep_plot is not None:
            width, height = adapter.plot_frontier(sweep_plot, outcome.sweep)
            print(f"wrote {sweep_plot} ({width}x{height} px)")
    except adapter.WhatIfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except tls_errors.TLSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def _serve(args: argparse.Namespace) -> int:
    settings = settings_module.from_args(args)
    logs.configure(settings.logs.level, settings.logs.format)
    return _run(settings)


def _local(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, "plain")
    try:
        setup = commands.prepare_local(args.state_dir, args.secure_port, args.values_file)
    except tls_errors.TLSError as exc:
        logger.error("cannot prepare local certificates: %s", exc)
        return 1
    lines = "\n".join(f"  {command}" for command in commands.local_commands(setup))

    async def announce(server: Server) -> None:
        # Wait for the first forecast, so that the printed commands show a value at once.
        for _ in range(600):
            if server.refresher is None or server.refresher.last_report is not None:
                break
            await asyncio.sleep(0.1)
        print(f"\nThe adapter is serving. Try:\n{lines}\nStop it with Ctrl-C.\n", flush=True)

    settings = settings_module.from_args(args, setup.settings, only=LOCAL_FLAGS)
    return _run(settings, on_started=announce, source=setup.source)


async def _nothing(server: Server) -> None:
    return None


def _run(
    settings: Settings,
    on_started: Callable[[Server], Awaitable[None]] = _nothing,
    source: adapter.HistorySource | None = None,
) -> int:
    try:
        settings.validate()
        server = Server(settings, source=source)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    except (tls_errors.TLSError, KubeAPIError, forecaster.ForecasterError) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    try:
        asyncio.run(_serve_until_signalled(server, on_started))
    except (KubeAPIError, TrustError, tls_errors.TLSError) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    except OSError as exc:
        logger.error(
            "cannot listen on %s:%d: %s",
            settings.serving.bind_address,
            settings.serving.secure_port,
            exc.strerror,
        )
        return 1
    busy = _busy_threads(patience=THREAD_PATIENCE)
    if busy:
        logger.warning(
            "exiting without waiting for %d blocked worker thread(s): %s",
            len(busy),
            ", ".join(busy),
        )
        _exit_now(0)
    return 0


async def _serve_until_signalled(
    server: Server, on_started: Callable[[Server], Awaitable[None]]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        # What start-up built (the model, the config) lives until exit: keep the cycle
        # collector from walking it on every full pass, which holds the GIL for ~0.1 s.
        gc.freeze()
        await on_started(server)
        await stop.wait()
        budget = server.settings.serving.shutdown_timeout
        logger.info("stopping within %gs", budget)
        watchdog = threading.Timer(budget, _overrun, args=(budget,))
        watchdog.daemon = True
        watchdog.start()
    finally:
        await server.stop()


def _overrun(budget: float) -> None:
    logger.error(
        "stopping took longer than --shutdown-timeout (%gs); exiting now (busy threads: %s)",
        budget,
        ", ".join(_busy_threads()) or "none",
    )
    _exit_now(1)


def _busy_threads(patience: float = 0.0) -> list[str]:
    """Threads that would hold back the interpreter's exit (it joins them all), after
    `patience` seconds for those just finishing their work."""
    me = threading.current_thread()
    threads = [t for t in threading.enumerate() if t is not me and not t.daemon]
    deadline = time.monotonic() + patience
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread.name for thread in threads if thread.is_alive()]


def _exit_now(code: int) -> None:
    """Exit without joining worker threads, after writing out what was logged."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
