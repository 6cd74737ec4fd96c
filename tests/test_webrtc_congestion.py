"""Congestion: with the namespace's link rate-limited (tc tbf), the encoder's bitrate follows libwebrtc's
congestion controller down and back up, frames keep flowing, and once the limit is lifted the
glass-to-glass latency comes back down.

Server and client (reactor-sdk 1.13) share the namespace, so their packets cross its ``lo``: that is
the link limited. Skipped where ``tc`` or the ``tbf`` qdisc is not available. The scenario is
``benchmarks/webrtc_congestion.py``'s (bitrates from the server's own stats, every frame's latency
from the frame-metadata trailer). The latency bound after the limit is no timing of our code but a
bound on a backlog: reactor-webrtc keeps each input frame libwebrtc drops queued ahead of every later
one for good (see ``reactor_engine/transports/webrtc/media.py``), ~66 frames (2.2 s) here before the
transport paced what it pushes; a few frames now.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import NetNs, NetNsUnavailable
from webrtc_helpers import start_stun

pytest.importorskip("reactor_sdk")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import webrtc_congestion as scenario

from reactor_engine.transports.webrtc.budget import PushBudget

MAX_BITRATE = 1_500_000
LIMIT = "400kbit"
# Generous: a backlog of 15 frames (the one this bounds was 66) or a network queue still full.
RECOVERED_P90_MS = 500.0


@pytest.fixture
def ns() -> Iterator[NetNs]:
    namespace = NetNs()
    try:
        namespace.create()
    except NetNsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        why = scenario.tbf_available(namespace)
        if why:
            pytest.skip(why)
        start_stun(namespace)
        yield namespace
    finally:
        namespace.close()


def test_bitrate_follows_the_link_down_and_up_and_latency_recovers(ns):
    result = scenario.run_reactor_webrtc(
        ns, limit=LIMIT, free=3.0, limited=7.0, recovered=8.0, bitrate=MAX_BITRATE
    )
    report = scenario.phases_report(result, tail_s=3.0)
    samples = {name: [s for s in result["samples"] if s["phase"] == name] for name in report}
    last = result["samples"][-1]
    print(
        f"\n[webrtc] congestion at {LIMIT}: latency by phase {report}"
        f"\n  encoder target bit/s: {[(s['phase'][0], s['target']) for s in result['samples']]}"
        f"\n  frames pushed {last['pushed']}, skipped {last['skipped']}, resyncs {last['resyncs']}, "
        f"libwebrtc input drops {last['input_drops']}, left in reactor-webrtc's queue {last['backlog']}"
    )
    assert samples["free"][-1]["target"] == MAX_BITRATE  # the link takes it all: the configured bitrate
    lowest = min(s["target"] for s in samples["limited"])
    assert lowest < MAX_BITRATE / 2  # down with the limit...
    assert samples["recovered"][-1]["target"] > 1.5 * lowest  # ...and back up once it is lifted
    # Frames kept going in every phase, the limited one included, and reached the client.
    for name in ("free", "limited", "recovered"):
        assert samples[name][-1]["pushed"] > samples[name][0]["pushed"], name
        assert report[name]["frames"] > 0, (name, report)
    # After the limit the latency comes back down: what reactor-webrtc keeps queued stays small.
    tail = report["recovered_tail"]
    assert tail["frames"] > 0, report
    assert tail["p90_ms"] is not None
    assert tail["p90_ms"] < RECOVERED_P90_MS, (report, last)


def test_the_push_budget_drains_at_the_target_and_backs_off_after_drops():
    budget = PushBudget()
    assert budget.fits(10**9) and budget.drained  # no RateUpdate yet: no limit
    budget.rate = 100_000  # holds 0.3 s: 30 kbit
    budget.drain(0.0)
    assert budget.fits(30_000) and not budget.fits(30_001)
    budget.add(24_000, keyframe=False)
    assert not budget.fits(8_000) and not budget.drained
    budget.drain(0.1)  # 10 kbit drained
    assert budget.fits(8_000)
    budget.drain(1.0)
    assert budget.level == 0 and budget.drained
    budget.add(40_000, keyframe=True)  # a key frame comes in over 0.5 s: deltas still fit at once
    assert budget.fits(30_000)
    budget.drain(1.25)  # half of it in (20 kbit), 25 kbit out
    assert budget.level == 0
    budget.drain(1.5)  # the other half in, 25 kbit out
    assert budget.level == 0 and budget.drained
    budget.back_off(2.0)  # libwebrtc dropped an input: a full bucket and 0.5 s before resuming
    assert not budget.fits(1) and budget.backoff_s == 0.5
    budget.drain(2.4)
    assert not budget.drained
    budget.back_off(3.0)  # another drop soon after: twice as long, up to 2 s
    assert budget.backoff_s == 1.0
    budget.back_off(3.5)
    budget.back_off(4.0)
    assert budget.backoff_s == 2.0
    budget.drain(7.0)
    assert budget.drained
    budget.back_off(20.0)  # long after: from the start again
    assert budget.backoff_s == 0.5
