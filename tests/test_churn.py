"""Load and churn: many session create/stop cycles and WebSocket connects/disconnects against an
in-process server; RSS, open descriptors and threads of the process return to their baseline.

The counts are the issue's (1000 sessions, 10,000 connections) times ``REACTOR_CHURN_SCALE``
(default 1: the full counts take ~15 s each on 2 cores; 10 gives 10,000 sessions and 100,000
connections, ~5 min). Each test samples the process every ``cycles / 20`` cycles after a warm-up
(the session test first runs half its count unmeasured; the WebSocket test leaves its first quarter
out: executor threads, allocator pools, import-time caches), fits a least-squares slope of RSS
over the cycles and requires it to be about zero (< 1 KiB per cycle), and the descriptors and
threads to be back at their warm baseline (+-2).
The figures are printed (``-s``) for docs/reliability.md.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field

import pytest
from fault_helpers import RawWebSocket, open_fds, rss_bytes, slope, threads, wait_until
from test_http_protocol import start_server

SCALE = float(os.environ.get("REACTOR_CHURN_SCALE", "1"))
SESSION_CYCLES = max(100, round(1000 * SCALE))
SESSION_WARMUP = SESSION_CYCLES // 2
WS_CYCLES = max(400, round(10_000 * SCALE))
RSS_SLOPE_LIMIT = 1024.0  # bytes per cycle after the warm-up
COUNT_TOLERANCE = 2  # descriptors and threads, above or below the warm baseline


@dataclass
class Samples:
    """Resources of this process (server and clients together) sampled along the cycles."""

    cycles: list[int] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def take(self, cycle: int) -> None:
        # Live memory, not garbage waiting for a collection: an ended Session sits in a reference
        # cycle (its context holds its bound _post), so only the cyclic collector frees it.
        gc.collect()
        self.cycles.append(cycle)
        self.rss.append(rss_bytes())
        self.fds.append(open_fds())
        self.threads.append(threads())

    def check(self, name: str, total: int, warm_fraction: float = 0.25) -> None:
        warm = int(len(self.cycles) * warm_fraction)
        xs, rss = self.cycles[warm:], self.rss[warm:]
        per_cycle = slope(xs, rss)
        fd_slope = slope(xs, self.fds[warm:]) * total
        thread_slope = slope(xs, self.threads[warm:]) * total
        elapsed = time.monotonic() - self.started
        print(
            f"\n[churn] {name}: {total} cycles in {elapsed:.1f} s; RSS {rss[0] / 2**20:.1f} -> "
            f"{rss[-1] / 2**20:.1f} MiB, slope {per_cycle:+.1f} B/cycle; fds {self.fds[warm]} -> "
            f"{self.fds[-1]} (slope x cycles {fd_slope:+.2f}); threads {self.threads[warm]} -> "
            f"{self.threads[-1]} (slope x cycles {thread_slope:+.2f})"
        )
        assert per_cycle < RSS_SLOPE_LIMIT, f"RSS grows {per_cycle:.0f} B per cycle: {self.rss}"
        assert abs(self.fds[-1] - self.fds[warm]) <= COUNT_TOLERANCE, f"descriptors: {self.fds}"
        assert abs(self.threads[-1] - self.threads[warm]) <= COUNT_TOLERANCE, f"threads: {self.threads}"


@pytest.fixture
def server():
    # No orphan timer: the WebSocket churn keeps one session with no client between connections.
    running = start_server(orphan_timeout=0.0)
    yield running
    running.stop()
    running.engine.close()


def test_session_create_stop_cycles_leave_rss_fds_and_threads_flat(server):
    client = server.client
    every = max(1, SESSION_CYCLES // 20)
    # Warm-up first, unmeasured: the allocator's pools settle over the first few hundred sessions.
    for _ in range(SESSION_WARMUP):
        client.delete_session(client.create_session())
    samples = Samples()
    for cycle in range(SESSION_CYCLES):
        sid = client.create_session()
        if cycle % 10 == 0:  # every tenth session also has a client that gets a frame
            ws = RawWebSocket(server.url, sid)
            ws.next_frame()
            ws.close()
        assert client.delete_session(sid)["session_id"] == sid
        if cycle % every == 0 or cycle == SESSION_CYCLES - 1:
            samples.take(cycle)
    assert server.engine.current_session is None or server.engine.current_session.ended
    samples.check("session create/stop", SESSION_CYCLES, warm_fraction=0.0)


def test_websocket_connect_disconnect_cycles_leave_rss_fds_and_threads_flat(server):
    sid = server.client.create_session()
    every = max(1, WS_CYCLES // 20)
    samples = Samples()
    for cycle in range(WS_CYCLES):
        ws = RawWebSocket(server.url, sid)
        opcode, hello = ws.recv()
        assert opcode == 1 and b'"hello"' in hello
        if cycle % 10 == 9:
            ws.vanish()  # every tenth leaves without a close frame (RST)
        else:
            ws.close()
        if cycle % every == 0:
            samples.take(cycle)
    # The last sample once the server has seen the last client go.
    wait_until(lambda: server.client.session_stats(sid)["runtime"]["clients"] == 0, what="the last detach")
    samples.take(WS_CYCLES)
    stats = server.client.session_stats(sid)
    assert stats["end_reason"] is None  # the session served every connection and runs on
    server.client.delete_session(sid)
    samples.check("WebSocket connect/disconnect", WS_CYCLES)
