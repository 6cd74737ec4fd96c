"""VP8 on the native encoder thread and several outputs per encoder: what a host and a decoder see.

Decoding uses PyAV (FFmpeg's VP8 decoder), an independent check of the stream libvpx produced.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_core_gil import assert_overlap

from reactor_engine import _C, ConfigError, Engine, InvalidArgumentError, VideoModel, get_ctx, model
from reactor_engine.config import load_engine_config

av = pytest.importorskip("av")

FRAME_NS = 33_333_333  # 30 fps presentation times: VP8's rate control spreads the bitrate over them


def natural_frame(index: int, width: int, height: int) -> np.ndarray:
    """Smooth gradients, two moving shapes and a fine static texture: not flat colour."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = float(index)
    r = 100 + 60 * np.sin(x / width * 3.0 + t * 0.05) + 40 * y / height
    g = 90 + 50 * np.cos(y / height * 2.5 - t * 0.04) + 50 * x / width
    b = 120 + 45 * np.sin((x + y) / (width + height) * 5.0 + t * 0.03)
    image = np.stack([r, g, b], axis=-1)
    cx, cy = width * (0.35 + 0.2 * np.sin(t * 0.1)), height * (0.5 + 0.2 * np.cos(t * 0.08))
    image[(x - cx) ** 2 + (y - cy) ** 2 < (height * 0.12) ** 2] = (225, 190, 70)
    left = int(width * 0.55 + (index * 3) % int(width * 0.3))
    image[int(height * 0.2) : int(height * 0.45), left : left + width // 8] = (40, 70, 160)
    texture = np.random.default_rng(7).normal(0.0, 5.0, (height, width, 1)).astype(np.float32)
    return np.clip(image + texture, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pop_bytes(queue: _C.PacketQueue) -> tuple[bytes, bool]:
    with queue.pop(timeout=10.0) as packet:
        assert packet.codec == "vp8"
        return packet.tobytes(), packet.keyframe


def encode(encoder: _C.Encoder, ring: _C.FrameRing, frames: list[np.ndarray], first: int = 0):
    """Each frame through the encoder, one at a time: the (bytes, keyframe) of its VP8 packet."""
    out = []
    for i, frame in enumerate(frames):
        ring.write(frame, pts_ns=(first + i) * FRAME_NS, timeout=10.0)
        out.append(pop_bytes(encoder.queue_for("vp8")))
    return out


def test_vp8_decodes_to_the_frames_at_2_mbit_s():
    width, height = 640, 360
    ring = _C.FrameRing(4, width, height, "block")
    with _C.Encoder(ring, codec="vp8", bitrate=2_000_000) as encoder:
        frames = [natural_frame(i, width, height) for i in range(60)]
        packets = encode(encoder, ring, frames)
    decoder = av.CodecContext.create("vp8", "r")
    scores = []
    for (data, keyframe), source in zip(packets, frames, strict=True):
        (decoded,) = decoder.decode(av.Packet(data))
        assert bool(decoded.key_frame) == keyframe
        assert (decoded.width, decoded.height) == (width, height)
        scores.append(psnr(decoded.to_ndarray(format="rgb24"), source))
    assert packets[0][1], "the stream starts with a key frame"
    settled = scores[10:]  # after rate control has found the bitrate
    assert np.mean(settled) >= 32.0, scores
    assert min(settled) >= 28.0, scores
    bits_per_second = sum(len(data) for data, _ in packets[10:]) * 8 / (len(packets[10:]) / 30)
    assert bits_per_second < 2_000_000 * 1.5


def test_request_keyframe_makes_the_very_next_packet_a_keyframe():
    ring = _C.FrameRing(4, 160, 120, "block")
    with _C.Encoder(ring, codec="vp8", keyframe_interval=0) as encoder:
        frames = [natural_frame(i, 160, 120) for i in range(8)]
        assert [key for _, key in encode(encoder, ring, frames[:4])] == [True, False, False, False]
        encoder.request_keyframe()
        assert [key for _, key in encode(encoder, ring, frames[4:], first=4)] == [True, False, False, False]
        assert encoder.output_stats("vp8")["keyframes"] == 2


def test_a_lower_bitrate_makes_smaller_packets():
    ring = _C.FrameRing(4, 320, 240, "block")
    with _C.Encoder(ring, codec="vp8", bitrate=3_000_000, keyframe_interval=0) as encoder:
        frames = [natural_frame(i, 320, 240) for i in range(80)]
        high = encode(encoder, ring, frames[:40])
        encoder.set_bitrate(300_000)
        assert encoder.bitrate == 300_000
        low = encode(encoder, ring, frames[40:], first=40)
    high_mean = np.mean([len(data) for data, _ in high[20:]])
    low_mean = np.mean([len(data) for data, _ in low[20:]])
    assert low_mean < high_mean * 0.5, (high_mean, low_mean)


def test_bad_vp8_settings_are_rejected_with_the_allowed_range():
    ring = _C.FrameRing(2, 16, 16)
    with pytest.raises(InvalidArgumentError, match="bitrate must be between 10000"):
        _C.Encoder(ring, codec="vp8", bitrate=100)
    with pytest.raises(InvalidArgumentError, match="vp8_speed"):
        _C.Encoder(ring, codec="vp8", vp8_speed=20)
    with pytest.raises(InvalidArgumentError, match="given twice"):
        _C.Encoder(ring, codec="jpeg", extra_codecs=["vp8", "vp8"])
    with pytest.raises(InvalidArgumentError, match="unknown codec 'h264'"):
        _C.Encoder(ring, codec="jpeg", extra_codecs=["h264"])
    with _C.Encoder(ring, codec="vp8") as encoder:
        with pytest.raises(InvalidArgumentError, match="bitrate must be between"):
            encoder.set_bitrate(0)
        with pytest.raises(InvalidArgumentError, match="no 'jpeg' output; its outputs are: vp8"):
            encoder.queue_for("jpeg")


def test_a_disabled_extra_output_runs_no_codec_and_an_enabled_one_makes_packets():
    ring = _C.FrameRing(4, 160, 120, "block")
    frames = [natural_frame(i, 160, 120) for i in range(10)]
    with _C.Encoder(ring, codec="jpeg", extra_codecs=["vp8"]) as encoder:
        assert encoder.codecs == ["jpeg", "vp8"]
        assert (encoder.output_enabled("jpeg"), encoder.output_enabled("vp8")) == (True, False)
        for i, frame in enumerate(frames[:5]):
            ring.write(frame, pts_ns=i * FRAME_NS)
            encoder.queue.pop(timeout=10.0).release()
        encoder.flush(timeout=10.0)
        assert encoder.output_stats("vp8")["frames_encoded"] == 0
        assert encoder.queue_for("vp8").size == 0

        encoder.set_output_enabled("vp8", True)
        for i, frame in enumerate(frames[5:], start=5):
            ring.write(frame, pts_ns=i * FRAME_NS)
            with encoder.queue.pop(timeout=10.0) as jpeg:
                assert (jpeg.codec, jpeg.keyframe, jpeg.frame_index) == ("jpeg", True, i)
            _, keyframe = pop_bytes(encoder.queue_for("vp8"))
            assert keyframe == (i == 5), "an output enabled later starts with a key frame"
        encoder.flush(timeout=10.0)
        assert encoder.output_stats("jpeg")["frames_encoded"] == 10
        assert encoder.output_stats("vp8")["frames_encoded"] == 5
        assert ring.stats()["frames_encoded"] == 10  # each frame once, however many outputs


def test_a_full_extra_output_drops_frames_and_the_primary_goes_on():
    ring = _C.FrameRing(4, 64, 48, "block")
    with _C.Encoder(ring, codec="raw", extra_codecs=["vp8"], queue_capacity=2) as encoder:
        encoder.set_output_enabled("vp8", True)
        for i in range(6):  # nobody pops the VP8 output
            ring.write(natural_frame(i, 64, 48), pts_ns=i * FRAME_NS)
            with encoder.queue.pop(timeout=10.0) as packet:
                assert packet.frame_index == i
        encoder.flush(timeout=10.0)
        stats = encoder.output_stats("vp8")
        assert (stats["frames_encoded"], stats["frames_dropped"]) == (2, 4)


def test_vp8_pop_and_flush_release_the_gil():
    rings = [_C.FrameRing(4, 1280, 720, "block") for _ in range(2)]
    encoders = [_C.Encoder(ring, codec="vp8", queue_capacity=8) for ring in rings]
    frames = [natural_frame(i, 1280, 720) for i in range(4)]

    def pop(index: int) -> None:
        with pytest.raises(TimeoutError):
            encoders[index].queue.pop(timeout=0.3)

    def encode_then_flush(index: int) -> None:
        for i, frame in enumerate(frames):
            rings[index].write(frame, pts_ns=i * FRAME_NS, timeout=10.0)
        encoders[index].set_bitrate(1_000_000)
        encoders[index].request_keyframe()
        encoders[index].flush(timeout=30.0)

    assert_overlap(pop)
    assert_overlap(encode_then_flush)
    for encoder in encoders:
        assert encoder.output_stats("vp8")["frames_encoded"] == 4
        encoder.close()


# -- through the engine ------------------------------------------------------------------------------


@model(name="vp8-probe")
class Emitter(VideoModel):
    """Emits ``self.count`` frames once ``self.go`` is set, then waits to be stopped."""

    def __init__(self, config):
        self.count = 6
        self.go = threading.Event()

    def start_session(self):
        ctx = get_ctx()
        self.go.wait(10.0)
        for i in range(self.count):
            ctx.get_track().emit(natural_frame(i, 96, 64))
        while not ctx.should_stop():
            ctx.wait(0.01)


def vp8_engine_config(**overrides):
    config = {"max_width": 96, "max_height": 64, "width": 96, "height": 64, "ring_policy": "block"}
    config.update(overrides)
    return config


def test_an_engine_with_codec_vp8_gives_the_host_vp8_packets():
    with Engine(Emitter, engine_config=vp8_engine_config(codec="vp8")) as engine:
        engine.model.go.set()
        with engine.session() as session:
            assert session.codecs == ["vp8"]
            decoder = av.CodecContext.create("vp8", "r")
            for i in range(6):
                with session.next_packet(timeout=10.0) as packet:
                    assert (packet.codec, packet.width, packet.height) == ("vp8", 96, 64)
                    assert packet.keyframe == (i == 0)
                    (frame,) = decoder.decode(av.Packet(packet.tobytes()))
                    assert psnr(frame.to_ndarray(format="rgb24"), natural_frame(i, 96, 64)) > 20


def test_the_session_enables_an_extra_vp8_output_and_steers_it():
    config = vp8_engine_config(codec="jpeg", extra_codecs=["vp8"], bitrate=1_500_000)
    with Engine(Emitter, engine_config=config) as engine, engine.session() as session:
        assert session.codecs == ["jpeg", "vp8"]
        assert session.packet_queue(codec="vp8") is not session.packet_queue()
        session.set_output_enabled("vp8", True)
        session.set_bitrate(800_000)
        session.request_keyframe()
        engine.model.go.set()
        vp8 = [session.next_packet(timeout=10.0, codec="vp8") for _ in range(6)]
        jpeg = [session.next_packet(timeout=10.0) for _ in range(6)]
        assert [p.codec for p in vp8] == ["vp8"] * 6
        assert [p.codec for p in jpeg] == ["jpeg"] * 6
        assert vp8[0].keyframe
        assert [p.frame_index for p in vp8] == [p.frame_index for p in jpeg]
        for packet in vp8 + jpeg:
            packet.release()
        assert engine.tracks["main_video"].encoder.bitrate == 800_000
        with pytest.raises(InvalidArgumentError, match="no 'i420' output; its outputs are: jpeg, vp8"):
            session.next_packet(timeout=1.0, codec="i420")
        with pytest.raises(InvalidArgumentError, match="no 'raw' output"):
            session.set_output_enabled("raw", True)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"extra_codecs": ["jpeg"]}, "lists the primary codec 'jpeg'"),
        ({"extra_codecs": ["vp8", "vp8"]}, "names a codec twice"),
        ({"extra_codecs": ["h264"]}, r"extra_codecs\.0: Input should be"),
        ({"bitrate": 5}, "bitrate: Input should be greater than or equal to 10000"),
        ({"vp8_speed": 17}, "vp8_speed: Input should be less than or equal to 16"),
        ({"vp8_threads": 0}, "vp8_threads: Input should be greater than or equal to 1"),
        ({"keyframe_interval": -1}, "keyframe_interval: Input should be greater than or equal to 0"),
    ],
)
def test_bad_vp8_engine_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_engine_config(override)


def test_vp8_engine_settings_reach_the_encoder():
    config = load_engine_config(["codec=vp8", "extra_codecs=[jpeg]", "vp8_speed=-8", "keyframe_interval=60"])
    assert (config.codec, config.extra_codecs, config.vp8_speed) == ("vp8", ["jpeg"], -8)
    with Engine(Emitter, engine_config=config) as engine:
        encoder = engine.tracks["main_video"].encoder
        assert encoder.codecs == ["vp8", "jpeg"]
        assert (encoder.vp8_speed, encoder.keyframe_interval, encoder.bitrate) == (-8, 60, config.bitrate)
