"""``reactor-engine serve CONFIG.yaml``: deploy the scale-out application onto a running Ray cluster.

CONFIG.yaml is Serve's own config format (what ``serve deploy`` takes; ``docs/scale-out.md`` has a
multi-node example): ``proxy_location``, ``http_options`` and ``applications``, each with an
``import_path`` (``reactor_engine.serve:app_builder``) and its ``args`` (``ScaleOut``'s fields). The
cluster is ``--address``, else ``$RAY_ADDRESS``, else the one running on this machine (``auto``). The
command deploys, waits until every application runs (or fails), prints where each is served, and
exits; the applications stay on the cluster (``serve shutdown`` or ``serve delete NAME`` remove them).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from pathlib import Path
from typing import Any

from reactor_engine.errors import ConfigError
from reactor_engine.transports.guard import LOOPBACK_HOSTS

__all__ = ["add_command", "deploy", "load_config"]

_log = logging.getLogger("reactor_engine.serve")


def add_command(sub: Any) -> None:
    """Register ``serve`` on the CLI's subcommands (``reactor_engine.cli.build_parser``)."""
    command = sub.add_parser(
        "serve",
        help="deploy replicas of a model onto a running Ray cluster (Serve's config format; ray extra)",
    )
    command.add_argument(
        "config", metavar="CONFIG.yaml",
        help="a Serve config file whose applications import reactor_engine.serve:app_builder",
    )  # fmt: skip
    command.add_argument(
        "--address", metavar="ADDRESS", default=None,
        help="the Ray cluster, e.g. HEAD:6379 (default: $RAY_ADDRESS, else the one on this machine)",
    )  # fmt: skip
    command.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    command.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, _overrides: Any) -> int:
    from reactor_engine.logs import configure_logging

    configure_logging(args.verbose, "text")
    for name, url in deploy(Path(args.config), args.address).items():
        print(f"reactor-engine: application '{name}' serving at {url}", flush=True)
    return 0


def load_config(path: Path) -> Any:
    """The parsed config (Serve's ``ServeDeploySchema``); ``ConfigError`` naming what is wrong."""
    import yaml  # type: ignore[import-untyped, unused-ignore]  # types-PyYAML is optional

    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        raise ConfigError(
            "reactor-engine serve needs Ray Serve: pip install 'reactor-engine[ray]' (see docs/scale-out.md)"
        ) from None
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data.get("applications"):
        raise ConfigError(
            f"{path}: expected a Serve config (a mapping with 'applications': [{{name, route_prefix, "
            "import_path: reactor_engine.serve:app_builder, args: {target, replicas, ...}}}])"
        )
    try:
        return ServeDeploySchema.parse_obj(data)
    except Exception as exc:  # pydantic's ValidationError, whichever version Ray pins
        raise ConfigError(f"{path} is not a valid Serve config: {exc}") from None


def _builder(import_path: str) -> Any:
    module, _, attr = import_path.partition(":") if ":" in import_path else import_path.rpartition(".")
    if not module or not attr:
        raise ConfigError(f"import_path {import_path!r}: expected 'module:attribute'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"import_path {import_path!r} cannot be imported: {exc}") from None


def deploy(path: Path, address: str | None = None) -> dict[str, str]:
    """Deploy ``path``'s applications onto the cluster at ``address``; ``{name: url}`` once running."""
    config = load_config(path)
    http = config.http_options.dict(exclude_unset=True)
    host = http.get("host", "127.0.0.1")
    open_apps = [app.name for app in config.applications if not (app.args or {}).get("auth_token")]
    if host not in LOOPBACK_HOSTS and open_apps:
        raise ConfigError(
            f"{path}: http_options.host {host} makes the ingress reachable from other machines: give "
            f"every application an access token (args.auth_token; missing in {', '.join(open_apps)})"
        )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=target, configure_logging=False, log_to_driver=False)
    except ConnectionError as exc:
        raise ConfigError(
            f"no Ray cluster at {target!r} ({exc}); start one with `ray start --head`"
        ) from None
    try:
        serve.start(proxy_location=config.proxy_location, http_options=http)
        served: dict[str, str] = {}
        for app in config.applications:
            built = _builder(app.import_path)
            application = built(dict(app.args or {})) if not hasattr(built, "_bound_deployment") else built
            _log.info("deploying application '%s' (%s)", app.name, app.import_path)
            serve.run(application, name=app.name, route_prefix=app.route_prefix)
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            served[app.name] = f"http://{shown}:{http.get('port', 8000)}{app.route_prefix or '/'}"
        return served
    finally:
        ray.shutdown()  # the driver only: the applications stay on the cluster
