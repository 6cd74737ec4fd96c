"""``WebRtcOptions``: the network settings, limits and timeouts of the WebRTC transport."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reactor_engine.errors import InvalidArgumentError

if TYPE_CHECKING:
    import reactor_webrtc as rtc

__all__ = ["LOOPBACK_ORIGINS", "IceServer", "WebRtcOptions", "origin_allowed"]

_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
# Pages served from this machine, on any port.
LOOPBACK_ORIGINS = tuple(
    f"{scheme}://{host}" for scheme in ("http", "https") for host in ("localhost", "127.0.0.1", "[::1]")
)


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server: ``urls`` like ``stun:host:3478`` or ``turn:host:3478?transport=udp``."""

    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", (self.urls,))
        if not self.urls:
            raise InvalidArgumentError("IceServer needs at least one url")
        for url in self.urls:
            if not url.startswith(_ICE_SCHEMES):
                raise InvalidArgumentError(
                    f"ICE server url {url!r} must start with one of {', '.join(_ICE_SCHEMES)}"
                )

    @classmethod
    def parse(cls, spec: str) -> IceServer:
        """``URL`` or ``URL|USERNAME|CREDENTIAL`` (the form the CLI and environment take)."""
        url, _, rest = spec.partition("|")
        username, _, credential = rest.partition("|")
        return cls((url.strip(),), username, credential)

    def describe(self) -> dict[str, Any]:
        """The ``ice_servers`` route's entry: ``{"uris", "credentials"?}``."""
        entry: dict[str, Any] = {"uris": list(self.urls)}
        if self.username or self.credential:
            entry["credentials"] = {"username": self.username, "password": self.credential}
        return entry


@dataclass(frozen=True)
class WebRtcOptions:
    """Settings of the WebRTC transport (the Reactor local protocol).

    ``ice_servers``: STUN/TURN servers, used by the server's peers and handed to clients by the
    ``ice_servers`` route (empty: host candidates only, right for loopback and a LAN).
    ``port_min``/``port_max``: the UDP port range ICE binds (0/0: any port the OS gives).
    ``advertised_address``: an address (say a NAT's public one) added to the answer as an extra
    candidate for every UDP host candidate, same port.
    ``cors_origins``: origins of other pages allowed to call the protocol routes: ``scheme://host``
    (any port) or ``scheme://host:port``; ``"*"`` for any. The default, loopback origins only, lets a
    browser app served from this machine connect but no other web site; the server's own pages are
    always allowed.
    ``max_peers``: peer connections per session (the session hub's ``max_clients`` also counts them).
    ``gather_timeout``: seconds the answer waits for the server's ICE gathering before it is sent
    with the candidates found so far. ``negotiation_timeout``: seconds from an offer to a connected
    peer before the connection is dropped. ``ping_timeout``: seconds a connected peer may stay
    silent (no message on any channel) before it is dropped; 0 disables the check.
    ``channel_grace``: seconds a peer with a ``data`` channel but no ``control`` channel (js-sdk 2.9)
    waits for one before its video starts unpaused. ``max_message_bytes``: the largest data-channel
    message taken; a larger one is answered with an error and dropped.
    ``start_bitrate``: the congestion controller's starting estimate in bit/s (None: the encoder's
    configured bitrate; libwebrtc's own 300 kbit/s start makes it drop, and reactor-webrtc then
    delay, the first frames).
    ``min_bitrate``: the lowest target bitrate the encoder is ever given.
    ``candidate_buffer``: ICE candidates kept per connection while its offer has not arrived.
    """

    ice_servers: tuple[IceServer, ...] = ()
    port_min: int = 0
    port_max: int = 0
    advertised_address: str | None = None
    cors_origins: tuple[str, ...] = LOOPBACK_ORIGINS
    max_peers: int = 8
    gather_timeout: float = 2.0
    negotiation_timeout: float = 15.0
    ping_timeout: float = 30.0
    channel_grace: float = 0.3
    max_message_bytes: int = 256 * 1024
    start_bitrate: int | None = None
    min_bitrate: int = 30_000
    candidate_buffer: int = 64
    connections_kept: int = 64

    def rtc_configuration(self) -> rtc.RtcConfiguration:
        """libwebrtc's configuration of each server peer: these ICE servers and UDP ports, max-bundle."""
        import reactor_webrtc as rtc  # here, not at import: the CLI parses these flags without it

        servers = [rtc.IceServer(list(s.urls), s.username, s.credential) for s in self.ice_servers]
        return rtc.RtcConfiguration(
            ice_servers=servers,
            min_port=self.port_min,
            max_port=self.port_max,
            bundle_policy=rtc.BundlePolicy.MaxBundle,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        if not (0 <= self.port_min <= 65535 and 0 <= self.port_max <= 65535):
            raise InvalidArgumentError(
                f"WebRtcOptions port range {self.port_min}-{self.port_max} must lie in 0-65535"
            )
        if (self.port_min == 0) != (self.port_max == 0) or self.port_min > self.port_max:
            raise InvalidArgumentError(
                f"WebRtcOptions port range {self.port_min}-{self.port_max}: give both ends, min <= max "
                "(or 0-0 for any port)"
            )
        if self.advertised_address is not None:
            try:
                ipaddress.ip_address(self.advertised_address)
            except ValueError:
                raise InvalidArgumentError(
                    f"WebRtcOptions.advertised_address must be an IP address; got {self.advertised_address!r}"
                ) from None
        for name in ("max_peers", "max_message_bytes", "min_bitrate", "candidate_buffer", "connections_kept"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"WebRtcOptions.{name} must be >= 1; got {getattr(self, name)}")
        for name in ("gather_timeout", "negotiation_timeout"):
            if not getattr(self, name) > 0:
                raise InvalidArgumentError(f"WebRtcOptions.{name} must be > 0 s; got {getattr(self, name)}")
        for name in ("ping_timeout", "channel_grace"):
            if not getattr(self, name) >= 0:
                raise InvalidArgumentError(f"WebRtcOptions.{name} must be >= 0 s; got {getattr(self, name)}")
        if self.start_bitrate is not None and self.start_bitrate < 1:
            raise InvalidArgumentError(f"WebRtcOptions.start_bitrate must be >= 1; got {self.start_bitrate}")

    @classmethod
    def from_strings(
        cls, *, ice_servers: Sequence[str] = (), port_range: str | None = None, **kwargs: Any
    ) -> WebRtcOptions:
        """Options from CLI/environment strings: ``ice_servers`` as ``IceServer.parse`` takes them,
        ``port_range`` as ``MIN-MAX``; the other keywords are passed through."""
        if port_range:
            low, sep, high = port_range.partition("-")
            if not sep or not low.strip().isdigit() or not high.strip().isdigit():
                raise InvalidArgumentError(
                    f"UDP port range must be MIN-MAX, like 50000-50100; got {port_range!r}"
                )
            kwargs["port_min"], kwargs["port_max"] = int(low), int(high)
        return cls(ice_servers=tuple(IceServer.parse(s) for s in ice_servers if s.strip()), **kwargs)


def origin_allowed(origin: str, allowed: Sequence[str], own_host: str) -> bool:
    """Whether a page of ``origin`` may call the routes: the server's own pages (``Host: own_host``),
    ``"*"``, an exact entry, or an entry without a port that names the origin's scheme and host."""
    if "*" in allowed or origin in allowed:
        return True
    scheme, sep, netloc = origin.partition("://")
    if not sep:
        return False  # "null" (a file:// page, a sandboxed frame) is never implied
    if netloc == own_host:
        return True
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    return f"{scheme}://{host}" in allowed


def from_flags(
    ice_servers: Sequence[str] | None,
    port_range: str | None,
    advertise: str | None,
    cors: Sequence[str] | None,
) -> WebRtcOptions:
    """``WebRtcOptions`` from ``reactor-engine run``'s flags; a flag not given (``None``) takes its
    environment variable (``REACTOR_ICE_SERVERS``, ``REACTOR_CORS_ORIGINS``: space-separated)."""
    ice = ice_servers if ice_servers is not None else os.environ.get("REACTOR_ICE_SERVERS", "").split()
    origins = cors if cors is not None else os.environ.get("REACTOR_CORS_ORIGINS", "").split()
    extra: dict[str, Any] = {"cors_origins": tuple(origins)} if origins else {}
    if advertise:
        extra["advertised_address"] = advertise
    return WebRtcOptions.from_strings(ice_servers=ice, port_range=port_range, **extra)
