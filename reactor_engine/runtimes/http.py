"""The http runtime: serves one ``Engine``'s app (``transports.app``) with uvicorn until a signal.

The app, its hub and transports live in ``reactor_engine.transports``; the routes and messages are
written down in ``docs/protocol.md``. This module binds the socket, guards the Host header on a
loopback bind, and turns SIGINT / SIGTERM into a graceful stop (the session first, then uvicorn).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn

from reactor_engine.errors import ConfigError
from reactor_engine.transports.app import HttpApp, HttpOptions, asgi_app
from reactor_engine.transports.guard import LOOPBACK_HOSTS

if TYPE_CHECKING:
    from reactor_engine.engine import Engine

__all__ = ["HttpApp", "HttpOptions", "asgi_app", "serve"]

_log = logging.getLogger("reactor_engine.http")

TOKEN_ENV = "REACTOR_AUTH_TOKEN"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn, with the session stopped and its clients closed first when a shutdown begins."""

    def __init__(self, config: uvicorn.Config, runtime: HttpApp, on_started: Callable[[str], None]) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            address = self.servers[0].sockets[0].getsockname()
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            self._on_started(f"http://{host}:{address[1]}/")

    async def shutdown(self, sockets: Any = None) -> None:
        await self._runtime.shutdown()
        await super().shutdown(sockets)


def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    options: HttpOptions | None = None,
    *,
    access_log: bool = False,
    on_started: Callable[[str], None] | None = None,
    insecure: bool = False,
) -> None:
    """Serve ``engine`` until SIGINT/SIGTERM; returns once the session is stopped and clients closed.

    Binds ``host`` (loopback by default; then only ``localhost``-style Host headers are accepted, which
    keeps other web pages from reaching the server through DNS rebinding). Any other address needs an
    access token (``options.auth_token``), or ``insecure=True`` to serve it to anyone who can reach
    it. ``port=0`` picks a free port; ``on_started`` receives the viewer's URL.
    """
    options = options or HttpOptions()
    if host not in LOOPBACK_HOSTS:
        if options.auth_token is None and not insecure:
            raise ConfigError(
                f"binding {host} makes the server reachable from other machines: set an access token "
                f"(--auth-token TOKEN or the {TOKEN_ENV} environment variable), or pass --insecure to "
                f"serve without one"
            )
        if options.allowed_hosts is None:  # reached by whatever name or address: the token guards it
            options = dataclasses.replace(options, allowed_hosts=("*",))
    runtime = HttpApp(engine, options)
    app: Any = runtime.app
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # frames are JPEG already: deflating them costs CPU for nothing
        # The transport's own cap, above the app's per-message limits (which answer with an error): text
        # messages, and binary (media) ones of up to an encoded input frame (input_max_bytes).
        ws_max_size=max(
            1 << 20, 4 * runtime.options.max_message_bytes, engine.config.input_max_bytes + (64 << 10)
        ),
        lifespan="off",
        log_config=None,
        access_log=access_log,
        timeout_graceful_shutdown=max(1, math.ceil(engine.config.stop_grace + 2)),
    )
    server = _Server(config, runtime, on_started or (lambda url: _log.info("viewer at %s", url)))
    received: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal that stopped it under the handler it found; with this one in place
    # that is a no-op, so a graceful stop ends the process with exit code 0, not by the signal.
    previous = (
        {sig: signal.signal(sig, lambda s, _: received.append(s)) for sig in _STOP_SIGNALS} if in_main else {}
    )
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        _log.info("stopped by %s", signal.Signals(received[0]).name)
