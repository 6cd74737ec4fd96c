"""Scale-out on Ray Serve (``reactor_engine.serve``): ``reactor-engine run --replicas 2`` with a tiny
model, driven through the ingress. Needs the ``ray`` extra (``make test-ray``); skipped without it."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from http_helpers import viewer_url

from reactor_engine.client import ClientError, ReactorClient

HAVE_RAY = importlib.util.find_spec("ray") is not None
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
MODEL = f"{Path(__file__).resolve().parent / 'ray_model.py'}:GreyModel"
ENGINE = [
    "--engine.codec=jpeg", "--engine.extra_codecs=[]", "--engine.max_width=64", "--engine.max_height=48",
    "--engine.width=32", "--engine.height=24", "--engine.orphan_timeout=60",
]  # fmt: skip


_POST = (
    "import sys, urllib.request\n"
    "r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'{}', method='POST'), timeout=30)\n"
    "print(r.read().decode())\n"
)


def test_reactor_sdk_streams_from_its_replica_through_the_ingress():
    """The published reactor-sdk (local mode, unmodified) against 2 replicas, in a network namespace
    (two libwebrtc peers need one). First, so that its Ray is gone before the module's starts."""
    pytest.importorskip("ray")
    pytest.importorskip("reactor_sdk")
    pytest.importorskip("reactor_webrtc")
    from webrtc_helpers import HERE, http_get, run_client, stun_namespace

    command = [
        "-m", "reactor_engine.cli", "run", str(HERE / "webrtc_model.py"), "--replicas", "2", "--port", "8080",
        "--model.width=320", "--model.height=240", "--engine.orphan_timeout=60",
    ]  # fmt: skip
    os.environ.update(RAY_ENV)  # ns.python passes this process's environment on
    with stun_namespace() as ns, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with log.open("wb") as sink:
            proc = ns.python(command, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 150
        while "open http://" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        url = "http://127.0.0.1:8080"
        shown = types.SimpleNamespace(log=lambda: log.read_text(errors="replace")[-6000:])  # for failures
        try:
            # A new session at the root: admitted to a free replica; signaling by its id; media direct.
            streamed = run_client(ns, "webrtc_sdk_client.py", ["stream", url, "3"], timeout=150, server=shown)
            sid = streamed["session_id"]
            assert streamed["first_frame"] and streamed["decoded"] >= 0.8 * streamed["emitted"] > 0
            assert streamed["echo"] == {"type": "echo", "data": {"text": "hi", "level": 0}}
            assert streamed["client_stats"]["candidate_type"] == "host"
            assert streamed["frames_after_reconnect"] and streamed["reconnect_session_id"] == sid
            _, status = http_get(ns, f"{url}/health")
            slot = status["sessions"][sid]  # the root's stop_session names no session: it still runs
            served = {r["slot"]: r["served"] for r in status["replicas"]}
            assert served[slot][sid] > 0 and sid not in served[1 - slot]
            # The session's own base URL: adopt it (GET /session), stream, then stop it.
            joined = run_client(
                ns, "webrtc_sdk_client.py", ["join", f"{url}/session/{sid}", sid, "1"], server=shown
            )
            assert joined["first_frame"] and joined["session_id"] == sid
            done = ns.run_python(["-c", _POST, f"{url}/session/{sid}/stop_session"], timeout=60)
            assert json.loads(done.stdout) == {"stopped": True, "session_id": sid}, done.stderr
            code, stopped = http_get(ns, f"{url}/session/{sid}/session")
            assert code == 404 and stopped["error"]["code"] in ("no_session", "session_not_found")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, log.read_text()[-4000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_deploys_a_config_onto_a_running_ray_cluster(tmp_path):
    """``ray start --head`` (Serve's switches in its environment, as docs/scale-out.md says), then
    ``reactor-engine serve CONFIG.yaml --address``: the replicas admit a session; ``ray stop`` after."""
    pytest.importorskip("ray")
    from reactor_engine.serve.app import LOCAL_RAY_ENV, SERVE_ENV

    ray_bin = Path(sys.executable).with_name("ray")
    gcs, http_port = free_port(), free_port()
    app = {
        "name": "reactor", "route_prefix": "/", "import_path": "reactor_engine.serve:app_builder",
        "args": {"target": MODEL, "replicas": 2, "num_cpus": 0.5,
                 "engine_overrides": [flag.removeprefix("--engine.") for flag in ENGINE]},
    }  # fmt: skip
    config = tmp_path / "scale-out.yaml"  # JSON is YAML
    config.write_text(json.dumps({
        "proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": http_port},
        "applications": [app],
    }))  # fmt: skip
    # A cluster of this machine alone, without Ray's token authentication (whose token the test would
    # otherwise hand from `ray start` to the deploying process: RAY_AUTH_TOKEN, ~/.ray/auth_token).
    env = {**os.environ, **RAY_ENV, **SERVE_ENV, "RAY_AUTH_MODE": "disabled", LOCAL_RAY_ENV: "0"}
    env |= {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    start = [str(ray_bin), "start", "--head", f"--port={gcs}", "--num-cpus=3", "--include-dashboard=false",
             "--disable-usage-stats", "--node-ip-address=127.0.0.1"]  # fmt: skip
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, text=True, timeout=120)
        address = f"127.0.0.1:{gcs}"
        command = [sys.executable, "-m", "reactor_engine.cli", "serve", str(config), "--address", address]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        base = f"http://127.0.0.1:{http_port}"
        assert f"application 'reactor' serving at {base}/" in done.stdout
        status = wait_all_free(base)  # the deploying process has exited: the cluster serves on
        assert len(status["replicas"]) == 2
        client = ReactorClient(base + "/", timeout=20)
        sid = client.create_session()
        with client.connect(sid) as connection:
            assert connection.next_frame().index >= 0
        assert list(health(base)["sessions"]) == [sid]
        client.delete_session(sid)
    finally:
        # Serve's own shutdown first: `ray stop` kills HAProxy's manager, not HAProxy itself.
        shutdown = f"import ray; from ray import serve; ray.init(address='127.0.0.1:{gcs}'); serve.shutdown()"
        subprocess.run([sys.executable, "-c", shutdown], env=env, capture_output=True, timeout=120)
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def ingress():
    pytest.importorskip("ray")
    env = {**os.environ, **RAY_ENV}
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
    metrics = client.metrics()  # the same, for Prometheus
    refused = re.search(r"^reactor_serve_sessions_refused_total (\S+)$", metrics, re.M)
    assert refused is not None and float(refused.group(1)) >= 2
    for sid, slot in now["sessions"].items():
        assert f'reactor_serve_replica_session{{session_id="{sid}",slot="{slot}"}} 1.0' in metrics
    assert re.search(r"^reactor_serve_replicas_free 0\.0$", metrics, re.M)
    assert re.search(r'^reactor_serve_replica_rss_bytes\{slot="1"\} [1-9]', metrics, re.M)
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


def test_serve_refuses_a_file_that_is_not_a_serve_config(tmp_path):
    bad = tmp_path / "scale-out.yaml"
    bad.write_text(f"target: {MODEL}\nreplicas: 2\n")
    command = [sys.executable, "-m", "reactor_engine.cli", "serve", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    if HAVE_RAY:
        assert "expected a Serve config (a mapping with 'applications'" in result.stderr
    else:
        assert "pip install 'reactor-engine[ray]'" in result.stderr


def test_serve_refuses_a_public_bind_without_an_access_token(tmp_path):
    config = tmp_path / "scale-out.yaml"
    app = {"name": "reactor", "import_path": "reactor_engine.serve:app_builder", "args": {"target": MODEL}}
    config.write_text(json.dumps({"http_options": {"host": "0.0.0.0", "port": 8000}, "applications": [app]}))
    command = [sys.executable, "-m", "reactor_engine.cli", "serve", str(config), "--address", "127.0.0.1:1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    if HAVE_RAY:
        assert "reachable from other machines" in result.stderr and "args.auth_token" in result.stderr
    else:
        assert "pip install 'reactor-engine[ray]'" in result.stderr
