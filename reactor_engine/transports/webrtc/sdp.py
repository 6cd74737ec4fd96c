"""SDP text the signaling needs to touch: a sanity check of offers, the server's candidates in answers,
and an offer's ``track_mapping`` entries.

The protocol has no route for the server's candidates to trickle back, so the answer carries them as
``a=candidate`` lines (the clients apply them with the answer). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_SDP_BYTES", "TrackMapping", "check_offer", "with_candidates"]

MAX_SDP_BYTES = 64 * 1024  # a reactor-sdk offer is ~5 KB, a browser's with candidates ~10 KB
_HOST_TO_SRFLX_PRIORITY = (126 - 100) << 24  # RFC 8445 type preferences: host 126, srflx 100


@dataclass(frozen=True)
class TrackMapping:
    """One entry of an offer's ``track_mapping``: a transceiver's ``mid`` and the track it carries.
    ``direction`` is the client's (``recvonly``: the client receives the model's output)."""

    mid: str
    name: str
    kind: str
    direction: str


class Candidate(Protocol):
    """What an ``rtc.IceCandidate`` offers here (a protocol, so tests can pass plain objects)."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


def check_offer(sdp: object) -> str | None:
    """Why ``sdp`` cannot be an SDP offer (a message for the client), or ``None`` if it may be one."""
    if not isinstance(sdp, str):
        return f'"sdp_offer" must be a string of SDP; got {type(sdp).__name__}'
    if len(sdp) > MAX_SDP_BYTES:
        return f'"sdp_offer" is {len(sdp)} characters; the limit is {MAX_SDP_BYTES}'
    if not sdp.startswith("v=0"):
        return '"sdp_offer" is not SDP: it must start with "v=0"'
    if "\nm=" not in sdp:
        return '"sdp_offer" has no media section ("m=" line)'
    return None


def with_candidates(sdp: str, candidates: Sequence[Candidate], advertised_address: str | None = None) -> str:
    """``sdp`` with an ``a=candidate`` line per candidate in the media section it belongs to.

    A candidate goes to the section its ``sdp_mid`` names, else the one at ``sdp_mline_index``, else
    the first. With ``advertised_address``, each UDP host candidate also gets a server-reflexive twin
    at that address and the same port (a 1:1 NAT forwards it to the host socket).
    """
    newline = "\r\n" if "\r\n" in sdp else "\n"
    head, *sections = sdp.rstrip("\r\n").split(f"{newline}m=")
    if not sections:
        return sdp
    mids = [_mid(section) for section in sections]
    extra: list[list[str]] = [[] for _ in sections]
    seen: set[str] = set()
    for candidate in candidates:
        lines = [candidate.candidate]
        if advertised_address:
            twin = _advertised_twin(candidate.candidate, advertised_address)
            if twin is not None:
                lines.append(twin)
        if candidate.sdp_mid is not None and candidate.sdp_mid in mids:
            index = mids.index(candidate.sdp_mid)
        elif candidate.sdp_mline_index is not None and 0 <= candidate.sdp_mline_index < len(sections):
            index = candidate.sdp_mline_index
        else:
            index = 0
        for line in lines:
            text = line.removeprefix("a=")
            key = f"{index} {text}"
            if text and key not in seen:
                seen.add(key)
                extra[index].append(f"a={text}")
    parts = [head]
    for section, lines in zip(sections, extra, strict=True):
        parts.append(newline.join(["m=" + section, *lines]))
    return newline.join(parts) + newline


def _mid(section: str) -> str | None:
    for line in section.splitlines():
        if line.startswith("a=mid:"):
            return line[6:].strip()
    return None


def _advertised_twin(candidate: str, address: str) -> str | None:
    """``candidate:F C udp P IP PORT typ host ...`` as a srflx candidate at ``address``; else ``None``."""
    fields = candidate.removeprefix("a=").split()
    if len(fields) < 8 or fields[2].lower() != "udp" or fields[6] != "typ" or fields[7] != "host":
        return None
    foundation, component, _transport, priority, ip, port = fields[:6]
    if ip == address or not priority.isdigit():
        return None
    tail = " ".join(fields[8:])
    twin_priority = max(1, int(priority) - _HOST_TO_SRFLX_PRIORITY)
    base = f"{foundation.removeprefix('candidate:')}9"[:32]
    line = (
        f"candidate:{base} {component} udp {twin_priority} {address} {port} typ srflx raddr {ip} rport {port}"
    )
    return f"{line} {tail}".rstrip()
