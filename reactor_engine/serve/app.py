"""The Serve application (an ingress and N replica slots), its builder, and the local runner.

``build(options)`` makes the application; ``app_builder(args)`` is the same for Serve's own config
files and CLI (``import_path: reactor_engine.serve:app_builder``, ``args: {target, replicas, ...}``), so
``serve deploy config.yaml`` puts it on an existing cluster. ``run_local`` is ``reactor-engine run
TARGET --replicas N``: a local Ray, the application, until SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from reactor_engine.serve.ingress import Ingress
from reactor_engine.serve.replica import EngineReplica, ReplicaSpec

__all__ = ["ScaleOut", "app_builder", "build", "run_local"]

_log = logging.getLogger("reactor_engine.serve")

APP_NAME = "reactor"


@dataclass(frozen=True)
class ScaleOut:
    """How many replicas of which model, and what each reserves.

    ``num_cpus``/``num_gpus``: Ray resources per replica (``num_gpus=1``: one GPU each; Ray sets
    ``CUDA_VISIBLE_DEVICES`` per replica). ``http``: ``HttpOptions`` fields of every replica's app
    (``max_clients``, ``webrtc``, ...). ``auth_token``/``allowed_hosts``: the ingress's guard (the
    clients' token; the Host names it answers, loopback by default). ``replica_host``: the address each
    replica's own server binds for the ingress's WebSocket/MJPEG proxy (loopback when the ingress
    shares the node; ``0.0.0.0`` on a multi-node cluster). ``health_check_period_s``: how often Serve
    asks each replica's engine for its state. ``retry_after``: the ``Retry-After`` of a 503.
    ``access_log``: Serve's log line per request and handle call (off: thousands a minute).
    """

    target: str
    replicas: int = 2
    model_overrides: tuple[str, ...] = ()
    engine_overrides: tuple[str, ...] = ()
    config_file: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    http: dict[str, Any] = field(default_factory=dict)
    auth_token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    replica_host: str = "127.0.0.1"
    health_check_period_s: float = 2.0
    health_check_timeout_s: float = 10.0
    retry_after: int = 5
    access_log: bool = False

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("ScaleOut.replicas must be at least 1")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("ScaleOut.num_cpus and num_gpus must be >= 0")


def build(options: ScaleOut) -> Any:
    """The Serve application: ``engine-0`` ... ``engine-{N-1}`` (one replica each) behind ``ingress``."""
    from ray import serve

    token = secrets.token_urlsafe(24)
    spec = ReplicaSpec(
        target=options.target,
        token=token,
        model_overrides=tuple(options.model_overrides),
        engine_overrides=tuple(options.engine_overrides),
        config_file=options.config_file,
        http=dict(options.http),
        host=options.replica_host,
    )
    actor: dict[str, Any] = {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus}
    logs = {"enable_access_log": options.access_log}
    slots = [
        serve.deployment(EngineReplica)
        .options(
            name=f"engine-{i}", num_replicas=1, ray_actor_options=actor, max_ongoing_requests=10_000,
            health_check_period_s=options.health_check_period_s,
            health_check_timeout_s=options.health_check_timeout_s, graceful_shutdown_timeout_s=15,
            logging_config=logs,
        )
        .bind(spec)
        for i in range(options.replicas)
    ]  # fmt: skip
    ingress = serve.deployment(serve.ingress()(Ingress)).options(
        name="ingress",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=10_000,
        logging_config=logs,
    )
    guard = {
        "retry_after": options.retry_after,
        "allowed_hosts": options.allowed_hosts,
        "auth_token": options.auth_token,
    }
    return ingress.bind(slots, token, guard)


def app_builder(args: dict[str, Any]) -> Any:
    """Serve's application builder (``serve run reactor_engine.serve:app_builder target=...``, or
    ``import_path`` + ``args`` in a Serve config file): ``args`` are ``ScaleOut``'s fields."""
    known = {f.name for f in fields(ScaleOut)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"unknown reactor_engine.serve arguments: {', '.join(unknown)}")
    values = dict(args)
    for key in ("model_overrides", "engine_overrides", "allowed_hosts"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    for key, kind in (("replicas", int), ("num_cpus", float), ("num_gpus", float)):
        if key in values:
            values[key] = kind(values[key])
    return build(ScaleOut(**values))


def run_local(
    options: ScaleOut,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_started: Callable[[str], None] | None = None,
) -> int:
    """Start a local Ray (this machine's CPUs and GPUs), deploy, serve until SIGINT/SIGTERM; 0."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    if port == 0:
        port = _free_port(host)
    # Logical CPUs: the replicas' reservations fit even where the machine has fewer cores.
    cpus = max(os.cpu_count() or 1, int(options.replicas * options.num_cpus + 0.999) + 1)
    ray.init(num_cpus=cpus, include_dashboard=False, configure_logging=False, log_to_driver=True)
    stop = threading.Event()
    received: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()

    def handler(sig: int, _: Any) -> None:
        received.append(sig)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        serve.start(http_options={"host": host, "port": port})
        _log.info("starting %d replicas of '%s'...", options.replicas, options.target)
        serve.run(build(options), name=APP_NAME, route_prefix="/")
        shown = f"[{host}]" if ":" in host else host
        (on_started or (lambda url: _log.info("serving at %s", url)))(f"http://{shown}:{port}/")
        stop.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
    if received:
        _log.info("stopped by %s", signal.Signals(received[0]).name)
    return 0


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_from_cli(args: Any, target: str, model: list[str], engine: list[str], http: Any) -> int:
    """``reactor-engine run TARGET --replicas N`` (the flags already checked by the CLI)."""
    from reactor_engine.errors import ConfigError
    from reactor_engine.transports.guard import LOOPBACK_HOSTS

    try:
        import ray.serve  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--replicas needs Ray Serve: pip install 'reactor-engine[ray]' (see docs/scale-out.md)"
        ) from None
    replica_http = {f.name: getattr(http, f.name) for f in fields(http)}
    for key in ("auth_token", "allowed_hosts"):
        replica_http.pop(key)
    options = ScaleOut(
        target=target, replicas=args.replicas, model_overrides=tuple(model), engine_overrides=tuple(engine),
        config_file=args.config, num_gpus=args.replica_gpus, http=replica_http, auth_token=args.auth_token,
        allowed_hosts=None if args.host in LOOPBACK_HOSTS else ("*",), access_log=args.verbose,
    )  # fmt: skip
    query = f"?token={args.auth_token}" if args.auth_token else ""
    return run_local(
        options, args.host, args.port,
        lambda url: _log.info("serving %d replicas of '%s': open %s%s", args.replicas, target, url, query),
    )  # fmt: skip
