"""The WebRTC transport's HTTP side, in process: routes, errors, CORS, buffering, options, SDP, bitrate.

No ICE runs here (no offer is ever applied that could connect), so no packet leaves the process; the
peer-to-peer behaviour is tested inside network namespaces (``test_webrtc_peers``, ``test_webrtc_sdk``).
The app is driven through ASGI directly, on the loop its session hub runs on.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("reactor_webrtc")

from reactor_engine import Engine
from reactor_engine.errors import InvalidArgumentError
from reactor_engine.transports.app import HttpApp, HttpOptions
from reactor_engine.transports.webrtc import IceServer, WebRtcOptions
from reactor_engine.transports.webrtc.channels import model_message
from reactor_engine.transports.webrtc.media import SessionMedia
from reactor_engine.transports.webrtc.sdp import check_offer, with_candidates

MODEL = str(Path(__file__).resolve().parent / "webrtc_model.py")
TINY = {"codec": "vp8", "max_width": 64, "max_height": 48, "width": 64, "height": 48, "bitrate": 100_000}
OFFER_HEAD = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
SECTIONS = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"
)


# -- a minimal ASGI client -----------------------------------------------------------------------------


async def call(
    app: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1", **(headers or {})}.items()
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    status, reply_headers, chunks = 0, {}, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, reply_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            reply_headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    data = b"".join(chunks)
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode(errors="replace")
    return status, reply_headers, parsed


@pytest.fixture(scope="module")
def engine():
    with Engine(MODEL, model_config={"width": 64, "height": 48}, engine_config=TINY) as eng:
        yield eng


def run(engine: Engine, scenario: Any, **webrtc: Any) -> Any:
    """Run ``scenario(app, hub)`` on a fresh app and loop; the session is stopped afterwards."""

    async def main() -> Any:
        http = HttpApp(engine, HttpOptions(webrtc=WebRtcOptions(**webrtc)))
        try:
            return await scenario(http.app, http.hub)
        finally:
            await http.shutdown()

    return asyncio.run(main())


def prefix(sid: str) -> str:
    return f"/sessions/{sid}/transport/webrtc"


# -- routes ------------------------------------------------------------------------------------------------


def test_start_session_returns_the_descriptor_every_client_parses(engine):
    async def scenario(app, hub):
        status, _, body = await call(app, "POST", "/start_session", {})
        again, _, busy = await call(app, "POST", "/start_session", {})
        got, _, current = await call(app, "GET", "/session")
        return status, body, again, busy, got, current

    status, body, again, busy, got, current = run(engine, scenario)
    assert status == 200
    # The fields js-sdk 2.9's zod schema requires and reactor-sdk 1.x reads in local mode.
    assert isinstance(body["session_id"], str) and body["session_id"]
    assert body["state"] == "ready"
    assert body["cluster"] == "local"
    assert body["model"]["name"] == "webrtc-test"
    assert body["server_info"]["server_version"]
    assert body["selected_transport"] == {"protocol": "webrtc", "version": "1.0"}
    assert body["capabilities"]["tracks"] == [
        {"name": "main_video", "kind": "video", "direction": "recvonly"}
    ]
    assert {c["name"] for c in body["capabilities"]["commands"]} == {"echo", "set_level"}
    assert again == 409
    assert busy["error"]["code"] == "busy"
    assert got == 200
    assert current["session_id"] == body["session_id"]


def test_transport_routes_need_the_running_session(engine):
    async def scenario(app, hub):
        none = await call(app, "GET", f"{prefix('nope')}/ice_servers")
        _, _, started = await call(app, "POST", "/start_session", {})
        wrong = await call(app, "GET", f"{prefix('nope')}/ice_servers")
        right = await call(app, "GET", f"{prefix(started['session_id'])}/ice_servers")
        stopped = await call(app, "POST", "/stop_session", {})
        after = await call(app, "GET", f"{prefix(started['session_id'])}/ice_servers")
        session = await call(app, "GET", "/session")
        return none, wrong, right, stopped, after, session

    none, wrong, right, stopped, after, session = run(
        engine, scenario, ice_servers=(IceServer(("stun:10.0.0.1:3478",)), IceServer.parse("turn:t:3478|u|p"))
    )
    assert none[0] == 400 and none[2]["error"]["code"] == "no_session"
    assert wrong[0] == 404 and wrong[2]["error"]["code"] == "session_not_found"
    assert right[0] == 200
    assert right[2]["ice_servers"] == [
        {"uris": ["stun:10.0.0.1:3478"]},
        {"uris": ["turn:t:3478"], "credentials": {"username": "u", "password": "p"}},
    ]
    assert stopped[0] == 200 and stopped[2]["stopped"] is True
    assert after[0] == 400
    assert session[0] == 404


def test_connections_offers_and_candidates_errors(engine):
    async def scenario(app, hub):
        _, _, started = await call(app, "POST", "/start_session", {})
        p = prefix(started["session_id"])
        out: dict[str, Any] = {}
        out["first"] = await call(app, "POST", f"{p}/connections", {})
        out["second"] = await call(app, "POST", f"{p}/connections", {})
        cid = out["first"][2]["connection_id"]
        out["unknown"] = await call(app, "POST", f"{p}/connections/9999/sdp_params", {"sdp_offer": "v=0"})
        out["not_a_number"] = await call(app, "GET", f"{p}/connections/abc/sdp_params")
        out["no_offer_yet"] = await call(app, "GET", f"{p}/connections/{cid}/sdp_params")
        candidate = {"candidate": "candidate:1 1 udp 2122260223 10.1.2.3 40000 typ host", "sdp_mid": "0"}
        out["early"] = await call(
            app,
            "POST",
            f"{p}/connections/{cid}/ice_candidates",
            {"candidates": [candidate] * 3, "is_final": False},
        )
        out["bad_candidate"] = await call(
            app, "POST", f"{p}/connections/{cid}/ice_candidates", {"candidates": [{"sdp_mid": 0}]}
        )
        out["not_sdp"] = await call(app, "POST", f"{p}/connections/{cid}/sdp_params", {"sdp_offer": "hello"})
        out["no_sdp"] = await call(app, "POST", f"{p}/connections/{cid}/sdp_params", {"track_mapping": []})
        out["bad_mapping"] = await call(
            app,
            "POST",
            f"{p}/connections/{cid}/sdp_params",
            {"sdp_offer": OFFER_HEAD + SECTIONS, "track_mapping": [{}]},
        )
        out["not_json"] = await call(app, "POST", f"{p}/connections/{cid}/sdp_params", b"{oops")
        out["too_big"] = await call(app, "POST", f"{p}/connections/{cid}/sdp_params", b"x" * (300 * 1024))
        out["stats"] = await call(app, "GET", f"{p}/stats")
        # An offer libwebrtc cannot apply: accepted for negotiation, then the answer poll says why.
        broken = OFFER_HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:x\r\n"
        out["broken_offer"] = await call(
            app, "POST", f"{p}/connections/{cid}/sdp_params", {"sdp_offer": broken, "track_mapping": []}
        )
        for _ in range(100):
            out["broken_answer"] = await call(app, "GET", f"{p}/connections/{cid}/sdp_params")
            if out["broken_answer"][0] != 202:
                break
            await asyncio.sleep(0.02)
        out["flat_get"] = await call(app, "GET", f"{p}/sdp_params")
        out["flat_candidates"] = await call(
            app, "POST", f"{p}/ice_candidates", {"candidates": [], "is_final": True}
        )
        return out

    out = run(engine, scenario)
    assert out["first"][0] == 201 and out["first"][2]["connection_id"] == 1002
    assert out["second"][2]["connection_id"] == 1003
    assert out["unknown"][0] == 404 and out["unknown"][2]["error"]["code"] == "connection_not_found"
    assert out["not_a_number"][0] == 404
    assert out["no_offer_yet"][0] == 404 and out["no_offer_yet"][2]["error"]["code"] == "no_offer"
    assert out["early"][0] == 202
    assert out["bad_candidate"][0] == 400 and out["bad_candidate"][2]["error"]["code"] == "bad_candidates"
    assert out["not_sdp"][0] == 400 and "v=0" in out["not_sdp"][2]["error"]["message"]
    assert out["no_sdp"][0] == 400 and "sdp_offer" in out["no_sdp"][2]["error"]["message"]
    assert out["bad_mapping"][0] == 400 and out["bad_mapping"][2]["error"]["code"] == "bad_track_mapping"
    assert out["not_json"][0] == 400 and out["not_json"][2]["error"]["code"] == "bad_json"
    assert out["too_big"][0] == 413
    connections = {c["connection_id"]: c for c in out["stats"][2]["connections"]}
    assert connections[1002]["candidates_pending"] == 3  # kept for the offer that has not come
    assert out["broken_offer"][0] == 202
    status, _, body = out["broken_answer"]
    assert status == 400 and body["error"]["code"] == "bad_offer", body
    assert "refused" in body["error"]["message"]
    assert out["flat_get"][0] == 404  # the legacy connection 1001 exists, with no offer yet
    assert out["flat_candidates"][0] == 202


def test_cors_preflight_allowlist_and_headers(engine):
    async def scenario(app, hub):
        allowed = {"origin": "http://app.example"}
        preflight = await call(
            app,
            "OPTIONS",
            "/start_session",
            headers={
                **allowed,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        ok = await call(app, "POST", "/start_session", {}, headers=allowed)
        other = await call(app, "GET", "/session", headers={"origin": "http://evil.example"})
        no_origin = await call(app, "GET", "/session")
        return preflight, ok, other, no_origin

    preflight, ok, other, no_origin = run(engine, scenario, cors_origins=("http://app.example",))
    assert preflight[0] == 204
    assert preflight[1]["access-control-allow-origin"] == "http://app.example"
    assert "POST" in preflight[1]["access-control-allow-methods"]
    assert preflight[1]["access-control-allow-headers"] == "content-type"
    assert ok[0] == 200 and ok[1]["access-control-allow-origin"] == "http://app.example"
    assert other[0] == 403 and other[2]["error"]["code"] == "forbidden_origin"
    assert no_origin[0] == 200  # tools and the SDKs send no Origin


def test_by_default_loopback_pages_are_allowed_and_other_sites_refused(engine):
    async def scenario(app, hub):
        local = await call(app, "POST", "/start_session", {}, headers={"origin": "http://localhost:5173"})
        other = await call(app, "GET", "/session", headers={"origin": "http://anywhere.example"})
        null = await call(app, "GET", "/session", headers={"origin": "null"})
        return local, other, null

    local, other, null = run(engine, scenario)
    assert local[0] == 200 and local[1]["access-control-allow-origin"] == "http://localhost:5173"
    assert other[0] == 403 and other[2]["error"]["code"] == "forbidden_origin"
    assert null[0] == 403  # a file:// page or a sandboxed frame: only with an explicit "*"


def test_any_origin_when_asked(engine):
    async def scenario(app, hub):
        return await call(app, "POST", "/start_session", {}, headers={"origin": "http://anywhere.example"})

    status, headers, _ = run(engine, scenario, cors_origins=("*",))
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"


# -- pieces ------------------------------------------------------------------------------------------------


def test_answer_carries_each_candidate_in_its_section_and_the_advertised_twin():
    sdp = OFFER_HEAD + SECTIONS
    host = "candidate:42 1 udp 2122260223 10.1.2.3 40000 typ host generation 0"
    tcp = "candidate:43 1 tcp 1518280447 10.1.2.3 9 typ host tcptype active"
    candidates = [
        SimpleNamespace(candidate=host, sdp_mid="0", sdp_mline_index=0),
        SimpleNamespace(candidate=tcp, sdp_mid=None, sdp_mline_index=1),
        SimpleNamespace(candidate=host, sdp_mid="0", sdp_mline_index=0),  # a repeat is written once
    ]
    out = with_candidates(sdp, candidates, "203.0.113.7")
    video, application = out.split("m=application")
    assert video.count("a=" + host) == 1
    assert "a=candidate:429 1 udp 1686052607 " in video  # the srflx twin: type preference 100, host's 126
    assert "203.0.113.7 40000 typ srflx raddr 10.1.2.3 rport 40000" in video
    assert "a=" + tcp in application
    assert "203.0.113.7" not in application  # only UDP host candidates get a twin
    assert out.endswith("\r\n")


@pytest.mark.parametrize(
    ("offer", "why"),
    [
        (None, "must be a string"),
        ("", 'start with "v=0"'),
        ("v=0\r\ns=-\r\n", "no media section"),
        ("v=0\r\nm=" + "x" * 70000, "limit"),
    ],
)
def test_check_offer_says_what_is_wrong(offer, why):
    assert why in (check_offer(offer) or "")


def test_check_offer_accepts_an_offer():
    assert check_offer(OFFER_HEAD + SECTIONS) is None


def test_options_are_validated():
    with pytest.raises(InvalidArgumentError, match="port range"):
        WebRtcOptions(port_min=50000, port_max=0)
    with pytest.raises(InvalidArgumentError, match="min <= max"):
        WebRtcOptions(port_min=50010, port_max=50000)
    with pytest.raises(InvalidArgumentError, match="IP address"):
        WebRtcOptions(advertised_address="example.com")
    with pytest.raises(InvalidArgumentError, match="must start with"):
        IceServer.parse("http://stun.example")
    with pytest.raises(InvalidArgumentError, match="ping_timeout"):
        WebRtcOptions(ping_timeout=-1)
    options = WebRtcOptions.from_strings(ice_servers=["stun:s:3478", " "], port_range="50000-50100")
    assert (options.port_min, options.port_max) == (50000, 50100)
    assert options.ice_servers == (IceServer(("stun:s:3478",)),)
    with pytest.raises(InvalidArgumentError, match="MIN-MAX"):
        WebRtcOptions.from_strings(port_range="50000")


def test_model_messages_keep_their_type_and_data():
    assert model_message({"type": "progress", "data": {"p": 1}}) == ("progress", {"p": 1})
    assert model_message({"type": "progress", "p": 1}) == ("progress", {"type": "progress", "p": 1})
    assert model_message({"p": 1}) == ("message", {"p": 1})
    assert model_message(3) == ("message", {"value": 3})


class Controls:
    def __init__(self) -> None:
        self.bitrates: list[int] = []
        self.keyframes = 0

    def request_keyframe(self) -> None:
        self.keyframes += 1

    def set_bitrate(self, bps: int) -> None:
        self.bitrates.append(bps)


def test_the_encoder_follows_the_lowest_peer_bitrate_within_its_bounds():
    # It aims 15% under the lowest allocation, between the floor and the configured bitrate.
    controls = Controls()
    media = SessionMedia(controls, max_bitrate=2_000_000, min_bitrate=100_000)
    media.rate_update(1, 1_500_000)
    media.rate_update(2, 800_000)
    media.rate_update(1, 3_000_000)  # above the configured bitrate: the lowest peer still rules
    media.rate_update(2, 810_000)  # within the hysteresis: not passed on
    media.rate_update(2, 50_000)  # below the floor
    media.remove(2)  # the slow peer left: back to the configured ceiling (peer 1 can take more)
    assert controls.bitrates == [1_275_000, 680_000, 100_000, 2_000_000]
    assert media.sender_cap >= 2 * media.max_bitrate
