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

__all__ = [
    "HAPROXY_ENV",
    "SERVE_ENV",
    "ScaleOut",
    "app_builder",
    "build",
    "run_local",
    "start_local",
    "stop_local",
]

_log = logging.getLogger("reactor_engine.serve")

APP_NAME = "reactor"

#: Serve's switches for a short request path (docs/scale-out.md, "Latency"), set for the local Ray
#: (``--replicas``) unless the environment sets them; on a cluster, set them where ``ray start`` runs:
#: every handle call by value over gRPC; user code and each handle's router on the replica's main
#: event loop (no thread hop per call).
SERVE_ENV = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}

#: A local Ray is one node on loopback: with this 0, Ray takes 127.0.0.1 as the node's address (the
#: mode it uses on macOS and Windows) and its servers (GCS, raylet, workers, agents) listen there
#: only; on Linux it would otherwise take the machine's address and listen on every interface.
LOCAL_RAY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

#: With ``RAY_SERVE_ENABLE_HA_PROXY=1`` in the environment (opt-in), HAProxy replaces Serve's Python
#: proxy, which implies Serve's *direct ingress* (the ingress replica serves HTTP itself: one hop and
#: ~3 ms fewer per request). Not the default: HAProxy's stats and Prometheus listeners bind every
#: interface (Serve 2.60's template has no address for them), and servers here bind loopback unless
#: told otherwise. These go with it: a replica of the ingress is let go at once on shutdown (HAProxy
#: is told before: no 30 s drain).
HAPROXY_ENV = {
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
}


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
    ``internal_token``: the token the replicas' own ports require (generated per build when unset; set
    it to reach a replica's port directly, as ``benchmarks/bench_serve.py`` does).
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
    internal_token: str | None = None

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("ScaleOut.replicas must be at least 1")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("ScaleOut.num_cpus and num_gpus must be >= 0")


def build(options: ScaleOut) -> Any:
    """The Serve application: ``engine-0`` ... ``engine-{N-1}`` (one replica each) behind ``ingress``."""
    from ray import serve

    token = options.internal_token or secrets.token_urlsafe(24)
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


def start_local(options: ScaleOut, host: str = "127.0.0.1", port: int = 8080) -> str:
    """Start a local Ray (this machine's CPUs and GPUs, ``SERVE_ENV`` unless set) and deploy on it; the
    URL of the ingress once every replica is ready. ``stop_local`` undoes it."""
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault(LOCAL_RAY_ENV, "0")
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        for key, value in HAPROXY_ENV.items():
            os.environ.setdefault(key, value)
        # HAProxy's stats and Prometheus ports (fixed by default, 8404 and 9101, on every interface):
        # free ones, so that two local runs (or one and a cluster's HAProxy) do not collide.
        for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
            os.environ.setdefault(key, str(_free_port("0.0.0.0")))
    else:
        os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "0")
    import ray
    from ray import serve

    if port == 0:
        port = _free_port(host)
    # Logical CPUs: the replicas' reservations fit even where the machine has fewer cores.
    cpus = max(os.cpu_count() or 1, int(options.replicas * options.num_cpus + 0.999) + 1)
    ray.init(num_cpus=cpus, include_dashboard=False, configure_logging=False, log_to_driver=True)
    try:
        serve.start(http_options={"host": host, "port": port})
        _log.info("starting %d replicas of '%s'...", options.replicas, options.target)
        serve.run(build(options), name=APP_NAME, route_prefix="/")
    except BaseException:
        stop_local()
        raise
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def stop_local() -> None:
    """Shut Serve and the local Ray down (what ``start_local`` started)."""
    import ray
    from ray import serve

    with contextlib.suppress(Exception):
        serve.shutdown()
    ray.shutdown()


def run_local(
    options: ScaleOut,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_started: Callable[[str], None] | None = None,
) -> int:
    """``start_local``, then serve until SIGINT/SIGTERM, then ``stop_local``; 0."""
    stop = threading.Event()
    received: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()

    def handler(sig: int, _: Any) -> None:
        received.append(sig)
        stop.set()

    url = start_local(options, host, port)  # a signal meanwhile: KeyboardInterrupt, or Ray's own exit
    # After ray.init, which installs its own SIGTERM handler (it would end the process at once).
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        (on_started or (lambda shown: _log.info("serving at %s", shown)))(url)
        stop.wait()
    finally:
        try:
            stop_local()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
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
