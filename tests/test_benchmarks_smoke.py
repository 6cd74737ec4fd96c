"""The benchmark suite's pieces work (a few frames each side, no timing asserted); benchmarks/run.py
--quick is the full smoke run in CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("simplejpeg")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import figures
import pipelines
import report
from baselines import QueuePipeline


def test_the_baseline_encodes_every_frame_with_ordered_stamps():
    pipeline = QueuePipeline(policy="block")
    frame = np.full((48, 64, 3), 200, np.uint8)
    try:
        for _ in range(3):
            pipeline.emit(frame)
        packets = [pipeline.next_packet(5.0) for _ in range(3)]
    finally:
        pipeline.close()
    assert [p.frame_index for p in packets] == [0, 1, 2]
    for p in packets:
        assert bytes(p)[:2] == b"\xff\xd8"  # a JPEG
        assert p.t_commit_ns <= p.t_encode_start_ns <= p.t_encode_end_ns <= p.t_publish_ns


def test_drop_oldest_baseline_counts_its_drops():
    pipeline = QueuePipeline(policy="drop_oldest", slots=1, packet_queue=1)
    frame = np.zeros((16, 16, 3), np.uint8)
    try:
        for _ in range(20):
            pipeline.emit(frame)
        counters = dict(pipeline.counters)
    finally:
        pipeline.close()
    assert counters["frames_committed"] == 20
    assert counters["frames_dropped_oldest"] > 0


@pytest.mark.parametrize("side", pipelines.SIDES)
def test_both_sides_deliver_a_job_s_frames_to_a_receiver(side):
    pipeline = pipelines.make_pipeline(side, pipelines.Settings(width=64, height=48))
    receiver = pipelines.Receiver(pipeline, capacity=16)
    frames = pipelines.make_frames(64, 48, count=2)

    def job(io):
        for frame in frames * 2:
            io.emit(frame)
        while not io.should_stop():
            io.wait(0.05)

    pipeline.start(job)
    try:
        assert receiver.wait_for(4, timeout=10.0)
    finally:
        pipeline.stop()
        receiver.close()
        pipeline.close()
    assert receiver.count == 4
    assert (receiver.column("receipt") >= receiver.column("commit")).all()


def test_the_report_writes_json_markdown_and_a_plot(tmp_path, monkeypatch):
    figure = figures.Figure("smoke", "smoke figure", "ms", target_kind="ratio", target=2.0, target_text="2x")
    monkeypatch.setattr(figures, "FIGURES", {"smoke": figure})
    monkeypatch.setattr(report, "FIGURES", figures.FIGURES)
    figures.record("smoke", "engine", figures.summary([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    figures.record("smoke", "baseline", figures.summary([4.0, 5.0, 6.0]), np.array([4.0, 5.0, 6.0]))
    assert figure.ratio == pytest.approx(2.5)
    assert figure.met is True
    paths = report.write(tmp_path, quick=True)
    body = json.loads(paths["json"].read_text())
    assert body["figures"]["smoke"]["ratio"] == pytest.approx(2.5)
    assert "| smoke figure | ms |" in paths["md"].read_text()
    if "png" in paths:
        assert paths["png"].stat().st_size > 0
