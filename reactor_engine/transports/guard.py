"""Who may reach the app: the Host header (against DNS rebinding) and the access token.

Both checks live in the app itself (``HttpApp``), so a host that mounts ``engine.asgi_app()`` in its
own server gets them too, not only ``reactor-engine run``. A pure ASGI middleware: it runs on the
asyncio loop for every HTTP request and WebSocket handshake, before any route.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

__all__ = ["LOOPBACK_HOSTS", "AccessGuard", "host_allowed"]

# What a browser sends as Host for a server on the loopback interface.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

Scope = dict[str, Any]
Receive = Any
Send = Any


def host_allowed(host_header: str, allowed: Sequence[str]) -> bool:
    """Whether ``Host: host_header`` (port stripped) is one of ``allowed`` (``"*"``: any)."""
    if "*" in allowed:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        host = host.split("]", 1)[0] + "]"
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host in allowed or host.strip("[]") in allowed


class AccessGuard:
    """ASGI middleware: refuses a request whose Host is not allowed (400) or that lacks the token (401).

    ``token``: when set, every request must carry it, as ``Authorization: Bearer TOKEN`` or, where a
    browser cannot set headers (a WebSocket, an ``<img>`` MJPEG stream, the viewer's first load), as
    the ``token`` query parameter. Compared in constant time. ``CORS`` preflights (``OPTIONS``) pass
    to the routes, which answer them for their allowlisted origins only.
    """

    def __init__(self, app: Any, *, allowed_hosts: Sequence[str], token: str | None) -> None:
        if token is not None and not token.strip():
            raise ValueError("an access token must not be empty")
        self.app = app
        self.allowed_hosts = tuple(host.lower() for host in allowed_hosts)
        self._token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if not host_allowed(headers.get("host", ""), self.allowed_hosts):
            await _refuse(
                scope, receive, send, 400, "invalid_host", "the Host header names no host this serves"
            )
            return
        if (
            self._token is not None
            and scope.get("method") != "OPTIONS"
            and not self._authorized(scope, headers)
        ):
            message = "an access token is required: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"
            await _refuse(scope, receive, send, 401, "unauthorized", message)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> bool:
        assert self._token is not None
        offered: list[str] = []
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered.append(credential.strip())
        query = scope.get("query_string", b"").decode("latin-1")
        offered.extend(parse_qs(query).get("token", []))
        # Every candidate is compared, so the time taken does not say which one came closest.
        results = [hmac.compare_digest(value.encode(), self._token) for value in offered]
        return any(results)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    if scope["type"] == "websocket":
        # Accepted, then closed with 4000 + the status: a browser sees the code (a refused handshake
        # only says 403).
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000 + status, "reason": code})
        return
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="reactor-engine"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
