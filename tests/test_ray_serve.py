"""Scale-out on Ray Serve (``reactor_engine.serve``): ``reactor-engine run --replicas 2`` with a tiny
model, driven through the ingress. Needs the ``ray`` extra (``make test-ray``); skipped without it."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from http_helpers import viewer_url

from reactor_engine.client import ClientError, ReactorClient

HAVE_RAY = importlib.util.find_spec("ray") is not None
MODEL = f"{Path(__file__).resolve().parent / 'ray_model.py'}:GreyModel"
ENGINE = [
    "--engine.codec=jpeg", "--engine.extra_codecs=[]", "--engine.max_width=64", "--engine.max_height=48",
    "--engine.width=32", "--engine.height=24", "--engine.orphan_timeout=60",
]  # fmt: skip


@pytest.fixture(scope="module")
def ingress():
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "reactor_engine.cli", "run", MODEL, "--replicas", "2", "--port", "0"]
    process = subprocess.Popen(
        [*command, *ENGINE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    with viewer_url(process, show_log=True) as url:
        yield url.rstrip("/")


def get_json(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


def post(url: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


def health(base: str) -> dict:
    return get_json(f"{base}/health")[2]


def wait_all_free(base: str, bound_s: float = 120.0) -> dict:
    """Both replicas ready with no session (a bound, not an assertion on time)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        status = health(base)
        if status["replicas_free"] == 2:
            return status
        time.sleep(0.5)
    pytest.fail(f"the replicas did not become free: {status}")


def end_all(base: str, client: ReactorClient) -> None:
    for sid in health(base)["sessions"]:
        client.delete_session(sid)
    wait_all_free(base)


def stream(client: ReactorClient, sid: str, frames: int, out: dict) -> None:
    with client.connect(sid) as connection:
        out[sid] = (connection.hello["session_id"], [connection.next_frame().index for _ in range(frames)])


def recv_events(connection, events: list) -> None:
    """Reads until the connection ends (raises ``ClientError``), keeping the events."""
    for _ in range(100_000):
        message = connection.recv(30)
        if isinstance(message, dict) and message.get("type") == "event":
            events.append(message)


def test_two_sessions_stream_a_third_gets_503_and_a_freed_replica_admits_again(ingress):
    client = ReactorClient(ingress + "/", timeout=20)
    wait_all_free(ingress)
    first, second = client.create_session(), client.create_session()
    holders = health(ingress)["sessions"]
    assert sorted(holders.values()) == [0, 1] and set(holders) == {first, second}

    seen: dict = {}
    threads = [threading.Thread(target=stream, args=(client, sid, 30, seen)) for sid in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for sid in (first, second):
        hello_sid, indices = seen[sid]
        assert hello_sid == sid and indices == sorted(indices) and len(set(indices)) == 30

    status, headers, body = post(f"{ingress}/sessions")
    assert status == 503 and body["error"]["code"] == "no_free_replica"
    assert int(headers["retry-after"]) >= 1
    status, _, body = post(f"{ingress}/start_session")  # the Reactor protocol's start: the same answer
    assert status == 503 and body["error"]["code"] == "no_free_replica"

    client.delete_session(first)
    third = client.create_session()
    now = health(ingress)
    assert now["sessions"] == {third: holders[first], second: holders[second]}
    assert now["sessions_refused"] >= 2
    with client.connect(third) as connection:
        assert connection.next_frame().index >= 0
    end_all(ingress, client)


def test_every_request_of_a_session_reaches_its_replica(ingress):
    client = ReactorClient(ingress + "/", timeout=20)
    wait_all_free(ingress)
    before = {r["slot"]: dict(r["served"]) for r in health(ingress)["replicas"]}
    sids = [client.create_session(), client.create_session()]
    status = health(ingress)
    slot_of = status["sessions"]
    pid_of = {r["slot"]: r["pid"] for r in status["replicas"]}
    connections = {sid: client.connect(sid) for sid in sids}
    rng = random.Random(13)
    http_requests = dict.fromkeys(sids, 0)
    try:
        for sid, connection in connections.items():
            assert connection.hello["session_id"] == sid
        for i in range(1000):
            sid = sids[rng.randrange(2)]
            kind = i % 4
            if kind == 0:
                assert client.session_stats(sid)["session_id"] == sid
                http_requests[sid] += 1
            elif kind == 1:
                reply = connections[sid].send_command("whoami")
                assert reply["pid"] == pid_of[slot_of[sid]]
            elif kind == 2:
                level = rng.randrange(256)
                assert connections[sid].send_command("set_level", {"level": level}) == {"level": level}
            else:
                connections[sid].next_frame()
    finally:
        for connection in connections.values():
            connection.close()
    after = {r["slot"]: r["served"] for r in health(ingress)["replicas"]}
    for sid in sids:
        slot, other = slot_of[sid], 1 - slot_of[sid]
        # the session's stats requests and its WebSocket handshake, all at its own replica
        assert after[slot].get(sid, 0) == http_requests[sid] + 1
        assert sid not in after[other] and sid not in before[other]
    end_all(ingress, client)


def test_a_killed_replica_ends_its_session_clearly_and_is_replaced(ingress):
    client = ReactorClient(ingress + "/", timeout=20)
    wait_all_free(ingress)
    doomed_sid, other_sid = client.create_session(), client.create_session()
    status = health(ingress)
    doomed_slot = status["sessions"][doomed_sid]
    doomed_pid = status["replicas"][doomed_slot]["pid"]
    doomed, other = client.connect(doomed_sid), client.connect(other_sid)
    try:
        doomed.next_frame()
        start = other.next_frame().index
        os.kill(doomed_pid, signal.SIGKILL)
        events = []
        with pytest.raises(ClientError) as ended:
            recv_events(doomed, events)
        assert ended.value.code == "closed" and "1011" in str(ended.value)
        assert events[-1]["event"] == "ended" and events[-1]["reason"] == "replica_lost"
        indices = [other.next_frame().index for _ in range(30)]
        assert indices == sorted(indices) and indices[0] > start  # the other session streams on

        assert client.session_stats(other_sid)["session_id"] == other_sid
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # Serve restarts the replica (a bound, not asserted)
            replica = health(ingress)["replicas"][doomed_slot]
            if replica["state"] == "ready" and replica.get("pid") not in (None, doomed_pid):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"slot {doomed_slot} was not replaced: {replica}")
        fresh = client.create_session()
        now = health(ingress)
        assert now["sessions"][fresh] == doomed_slot and now["sessions_lost"] >= 1
        with client.connect(fresh) as connection:
            assert connection.next_frame().index >= 0
        assert other.next_frame().index > indices[-1]
    finally:
        doomed.close()
        other.close()
    end_all(ingress, client)


@pytest.mark.skipif(HAVE_RAY, reason="ray is installed: the scale-out tests above run")
def test_replicas_without_ray_is_a_clear_error():
    command = [sys.executable, "-m", "reactor_engine.cli", "run", MODEL, "--replicas", "2", "--port", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install 'reactor-engine[ray]'" in result.stderr
