"""Scale-out on Ray Serve: what the ingress adds, against a direct connection to the replica, in one run.

2 replicas on a local Ray (``reactor_engine.serve.start_local``, as ``reactor-engine run --replicas 2``),
one session. Each figure is measured through the ingress and directly at the replica that holds the
session (its own port, with the deployment's internal token), interleaved, so both see the same load:

- control request: ``GET /sessions/{id}/stats`` on a keep-alive HTTP connection (p50/p99, ms);
- WebSocket round trip: ``ping`` -> reply on the session's WebSocket (p50/p99, ms);
- WebSocket frame: one client through the ingress and one direct, on the same session; for each frame
  index both received, (arrival through the ingress) - (arrival direct) (p50/p99, ms).

Also: the deployment's start (``serve.run`` until every replica is ready), each replica's model load
and constructor, the time Serve takes to replace a killed replica (SIGKILL -> its successor ready),
and memory: each replica's RSS, and that of everything else the run started (Ray, Serve, the ingress,
HAProxy where it runs). ``--serve-defaults`` runs Serve as it comes (its Python proxy, handles by
reference, user code on a separate thread) instead of ``reactor_engine.serve.SERVE_ENV``: the before/
after of that; ``--haproxy`` adds the opt-in HAProxy front (``RAY_SERVE_ENABLE_HA_PROXY=1``).

Run with the ray extra (``make bench-ray``, or ``.venv-ray/bin/python benchmarks/bench_serve.py``);
writes ``benchmarks/results/serve-<host>-<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Serve's own values of the switches reactor_engine.serve.SERVE_ENV changes (for --serve-defaults).
SERVE_DEFAULTS = {
    "RAY_SERVE_ENABLE_HA_PROXY": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "0",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "30",
}
BOUND_S = 180.0  # every wait below is bounded by this


def stats_ms(values: list[float]) -> dict[str, float]:
    data = np.asarray(values, dtype=float)
    return {
        "n": int(data.size),
        "p50": round(float(np.percentile(data, 50)), 3),
        "p99": round(float(np.percentile(data, 99)), 3),
        "mean": round(float(data.mean()), 3),
    }


def rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def descendants(root: int) -> list[int]:
    """Every live process under ``root`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Http:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, address: str, token: str | None = None) -> None:
        host, _, port = address.rpartition(":")
        self.conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=30)
        self.headers = {"Host": "127.0.0.1", **({"Authorization": f"Bearer {token}"} if token else {})}

    def call(self, method: str, path: str) -> tuple[int, Any]:
        self.conn.request(method, path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else None

    def timed(self, path: str) -> float:
        started = time.perf_counter()
        status, _ = self.call("GET", path)
        elapsed = (time.perf_counter() - started) * 1000.0
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        return elapsed


def health(ingress: Http) -> dict[str, Any]:
    return dict(ingress.call("GET", "/health")[1])


def wait_for(what: str, check: Any) -> Any:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if (value := check()) is not None:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {BOUND_S:.0f} s")


def sides(through: list[float], at: list[float]) -> dict[str, Any]:
    added = list(np.subtract(through, at))
    return {"ingress": stats_ms(through), "direct": stats_ms(at), "added": stats_ms(added)}


def control(ingress: Http, direct: Http, sid: str, count: int) -> dict[str, Any]:
    path = f"/sessions/{sid}/stats"
    for _ in range(20):
        ingress.timed(path), direct.timed(path)
    through, at = [], []
    for _ in range(count):
        through.append(ingress.timed(path))
        at.append(direct.timed(path))
    return sides(through, at)


def ws_round_trips(via: Any, direct: Any, count: int) -> dict[str, Any]:
    for _ in range(10):
        via.ping(), direct.ping()
    through, at = [], []
    for _ in range(count):
        through.append(via.ping())
        at.append(direct.ping())
    return sides(through, at)


def ws_frames(via: Any, direct: Any, frames: int) -> dict[str, Any]:
    arrivals: dict[str, dict[int, int]] = {"ingress": {}, "direct": {}}

    def receive(name: str, connection: Any) -> None:
        seen = arrivals[name]
        while len(seen) < frames:
            frame = connection.next_frame(30)
            seen[frame.index] = time.perf_counter_ns()

    threads = [
        threading.Thread(target=receive, args=("ingress", via), daemon=True),
        threading.Thread(target=receive, args=("direct", direct), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_S)
    both = sorted(set(arrivals["ingress"]) & set(arrivals["direct"]))[5:]  # the first ones: connecting
    added = [(arrivals["ingress"][i] - arrivals["direct"][i]) / 1e6 for i in both]
    return {"frames_compared": len(both), "added": stats_ms(added)}


def replace_one(ingress: Http, slot: int) -> dict[str, Any]:
    """SIGKILL the replica of ``slot`` (it holds no session); the time until its successor is ready."""
    old = health(ingress)["replicas"][slot]
    killed = time.monotonic()
    os.kill(old["pid"], signal.SIGKILL)

    def successor() -> dict[str, Any] | None:
        replica = health(ingress)["replicas"][slot]
        return (
            replica if replica["state"] == "ready" and replica.get("pid") not in (None, old["pid"]) else None
        )

    new = wait_for(f"slot {slot} replaced", successor)
    return {
        "restart_s": round(time.monotonic() - killed, 2),
        "load_s": new["load_s"],
        "start_s": new["start_s"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from reactor_engine.client import ReactorClient
    from reactor_engine.serve import ScaleOut
    from reactor_engine.serve.app import start_local, stop_local

    if args.serve_defaults:
        os.environ.update(SERVE_DEFAULTS)
    elif args.haproxy:
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    token = secrets.token_urlsafe(16)
    options = ScaleOut(
        target=args.target, replicas=2, model_overrides=tuple(args.model), internal_token=token,
        # orphan_timeout: the control requests come before any WebSocket client (slow on a loaded machine).
        engine_overrides=("codec=jpeg", "extra_codecs=[]", f"fps={args.fps}", "orphan_timeout=600"),
    )  # fmt: skip
    started = time.monotonic()
    url = start_local(options, port=0)
    deployed_s = time.monotonic() - started
    try:
        base = url.rstrip("/")
        ingress = Http(base.split("//", 1)[1])

        def all_free() -> dict[str, Any] | None:
            status = health(ingress)
            return status if status["replicas_free"] == 2 else None

        status = wait_for("both replicas ready", all_free)
        replicas = [
            {k: r[k] for k in ("slot", "pid", "load_s", "start_s", "rss_bytes")} for r in status["replicas"]
        ]
        code, created = ingress.call("POST", "/sessions")
        if code != 201:
            raise RuntimeError(f"POST /sessions: {code} {created}")
        sid = created["session_id"]
        holder = health(ingress)["sessions"][sid]
        address = health(ingress)["replicas"][holder]["address"]
        direct = Http(address, token)
        result: dict[str, Any] = {"control_stats_ms": control(ingress, direct, sid, args.requests)}
        via = ReactorClient(url, timeout=30).connect(sid)
        at = ReactorClient(f"http://{address}/", timeout=30, token=token).connect(sid)
        try:
            result["ws_frame_ms"] = ws_frames(via, at, args.frames)
            result["ws_ping_ms"] = ws_round_trips(via, at, args.requests)
        finally:
            via.close()
            at.close()
        ingress.call("DELETE", f"/sessions/{sid}")
        mine = set(descendants(os.getpid()))
        replica_pids = {r["pid"] for r in replicas}
        result["memory"] = {
            "replica_rss_mib": [round(rss_of(pid) / 2**20, 1) for pid in sorted(replica_pids)],
            "rest_rss_mib": round(sum(rss_of(pid) for pid in mine - replica_pids) / 2**20, 1),
            "rest_processes": len(mine - replica_pids),
        }
        result["start"] = {
            "deploy_s": round(deployed_s, 2),
            "replicas": replicas,
            "replaced": replace_one(ingress, 1 - holder) if not args.no_restart else None,
        }
        return result
    finally:
        stop_local()


def markdown(results: dict[str, Any]) -> str:
    r = results["results"]

    def row(name: str, figure: dict[str, Any]) -> str:
        cells = [figure.get(k, {}) for k in ("ingress", "direct", "added")]
        shown = [f"{c['p50']:.2f} / {c['p99']:.2f}" if c else "-" for c in cells]
        return f"| {name} | {' | '.join(shown)} |"

    settings = results["settings"]
    mode = (
        "Serve defaults"
        if settings["serve_defaults"]
        else "SERVE_ENV + HAProxy"
        if settings.get("haproxy")
        else "reactor_engine.serve.SERVE_ENV"
    )
    start, memory = r["start"], r["memory"]
    loads = ", ".join(f"{x['load_s']} / {x['start_s']} s" for x in start["replicas"])
    lines = [
        f"# Scale-out ingress ({mode})",
        "",
        results["machine"],
        "",
        "| per request (ms, p50 / p99) | through the ingress | direct to the replica | added |",
        "|---|---|---|---|",
        row("GET /sessions/{id}/stats", r["control_stats_ms"]),
        row("WebSocket ping round trip", r["ws_ping_ms"]),
        row(f"WebSocket frame ({r['ws_frame_ms']['frames_compared']} frames)", r["ws_frame_ms"]),
        "",
        f"Deploy (2 replicas, serve.run until ready): {start['deploy_s']} s; per replica model load / "
        f"constructor: {loads}.",
    ]
    if start["replaced"]:
        lines.append(
            f"A killed replica replaced in {start['replaced']['restart_s']} s (SIGKILL -> successor ready)."
        )
    lines.append(
        f"RSS per replica: {', '.join(f'{m} MiB' for m in memory['replica_rss_mib'])}; everything else "
        f"(Ray, Serve, ingress, proxy: {memory['rest_processes']} processes): {memory['rest_rss_mib']} MiB."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--target", default="reactor_engine.demo:DemoModel")
    parser.add_argument("--model", action="append", default=["width=320", "height=240"], help="KEY=VALUE")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--requests", type=int, default=300, help="control requests / pings per side")
    parser.add_argument("--frames", type=int, default=300, help="WebSocket frames per client")
    parser.add_argument("--serve-defaults", action="store_true", help="Serve as it comes (the 'before')")
    parser.add_argument("--haproxy", action="store_true", help="HAProxy in front (opt-in; see SERVE_ENV)")
    parser.add_argument("--no-restart", action="store_true", help="skip the replica replacement")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    from report import machine_line  # imported late: report pulls in the engine

    results = {"machine": machine_line(), "settings": vars(args) | {"out": str(args.out)}}
    results["results"] = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"serve-{os.uname().nodename}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    stem.with_suffix(".md").write_text(text)
    print(text, end="")
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
