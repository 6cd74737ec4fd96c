"""The baseline: the pattern most Python real-time servers use, at the engine's settings.

The model thread copies each frame and puts it on a ``queue.Queue(maxsize=slots)``; one Python
thread takes frames off it, encodes them with simplejpeg (libjpeg-turbo) and puts the bytes on a
second bounded queue for the transport. Everything the engine does natively here is Python:
allocation of the copy and of the JPEG bytes per frame, locking, waking, timestamps.

To be compared fairly it takes the engine's settings (ring slots and policy, JPEG quality and
subsampling, and TurboJPEG's DCT choice as the engine makes it, packet queue depth, fixed
or automatic pacing through the engine's own ``FramePacer``), stamps the same moments on the same
clock (``time.monotonic_ns``, which the core's clock equals), and its packets carry the same fields
as the engine's ``Packet``.

Threads: ``emit`` runs on the model thread; ``_encode_loop`` on this object's encoder thread;
``next_packet`` on the transport's. Full ring under ``block``: ``emit`` waits in ``put`` *after* the
copy, so under that policy the baseline's commit stamp (taken just before ``put``) counts the wait.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np
import simplejpeg

from reactor_engine.pacing import FramePacer

POLICIES = ("block", "drop_oldest", "drop_newest")


class QueuePacket:
    """One encoded frame: the engine's ``Packet`` fields, over a ``bytes`` object."""

    __slots__ = (
        "codec",
        "data",
        "frame_index",
        "height",
        "pts_ns",
        "t_acquire_ns",
        "t_commit_ns",
        "t_encode_end_ns",
        "t_encode_start_ns",
        "t_publish_ns",
        "width",
    )

    def __init__(self, data: bytes, frame: _Frame, t_start: int, t_end: int) -> None:
        self.codec = "jpeg"
        self.data = data
        self.frame_index = frame.index
        self.height, self.width = frame.pixels.shape[:2]
        self.pts_ns = frame.pts_ns
        self.t_acquire_ns = frame.t_commit_ns
        self.t_commit_ns = frame.t_commit_ns
        self.t_encode_start_ns = t_start
        self.t_encode_end_ns = t_end
        self.t_publish_ns = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def tobytes(self) -> bytes:
        return self.data

    def release(self) -> None:
        """Nothing to give back: the garbage collector frees the bytes (the engine pools them)."""

    def __enter__(self) -> QueuePacket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _Frame:
    __slots__ = ("index", "pixels", "pts_ns", "t_commit_ns")

    def __init__(self, pixels: np.ndarray, index: int, pts_ns: int) -> None:
        self.pixels = pixels
        self.index = index
        self.pts_ns = pts_ns
        self.t_commit_ns = 0


class QueuePipeline:
    """copy → ``queue.Queue(maxsize=slots)`` → Python encoder thread (simplejpeg) → packet queue.

    Built once (like an engine at model load); ``reset()`` between sessions discards what is queued.
    Counters use the names of the engine's ``FrameRing.stats()``.
    """

    def __init__(
        self,
        *,
        slots: int = 4,
        policy: str = "drop_oldest",
        quality: int = 85,
        subsampling: str = "420",
        packet_queue: int = 8,
        fps: float = 0.0,
        emit_timeout: float = 2.0,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        self.policy = policy
        self.quality = quality
        self.subsampling = subsampling
        self.emit_timeout = emit_timeout
        self.frames: queue.Queue[_Frame | None] = queue.Queue(maxsize=slots)
        self.packets: queue.Queue[QueuePacket] = queue.Queue(maxsize=packet_queue)
        self.pacer = FramePacer(fps)
        self.stopping = threading.Event()  # cuts a pacing wait short, like the engine's stop
        self.counters = dict.fromkeys(
            ("frames_committed", "frames_encoded", "frames_dropped_oldest", "frames_dropped_newest"), 0
        )
        self.counters["block_timeouts"] = 0
        self._index = 0
        self._encoder = threading.Thread(target=self._encode_loop, name="baseline-encoder", daemon=True)
        self._encoder.start()

    @property
    def encoder_native_id(self) -> int | None:
        return self._encoder.native_id

    # -- model thread ------------------------------------------------------------------------------

    def emit(self, frame: Any) -> None:
        """Pace (when ``fps > 0``), copy, and hand the frame to the encoder thread under the policy."""
        self.pacer.begin_batch(1)
        pts_ns, wait_ns = self.pacer.next_frame()
        if wait_ns:
            self.stopping.wait(wait_ns / 1e9)
        item = _Frame(np.array(frame, dtype=np.uint8, copy=True), self._index, pts_ns)
        self._index += 1
        item.t_commit_ns = time.monotonic_ns()
        self.counters["frames_committed"] += 1
        if self.policy == "block":
            try:
                self.frames.put(item, timeout=self.emit_timeout)
            except queue.Full:
                self.counters["block_timeouts"] += 1
                raise TimeoutError(f"the frame queue stayed full for {self.emit_timeout} s") from None
        elif self.policy == "drop_newest":
            try:
                self.frames.put_nowait(item)
            except queue.Full:
                self.counters["frames_dropped_newest"] += 1
        else:
            while True:
                try:
                    self.frames.put_nowait(item)
                    break
                except queue.Full:
                    try:
                        self.frames.get_nowait()
                    except queue.Empty:
                        continue
                    self.frames.task_done()
                    self.counters["frames_dropped_oldest"] += 1

    # -- encoder thread ----------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while (frame := self.frames.get()) is not None:
            t_start = time.monotonic_ns()
            data = simplejpeg.encode_jpeg(
                frame.pixels,
                quality=self.quality,
                colorspace="RGB",
                colorsubsampling=self.subsampling,
                # No fastdct: it changes no encoded byte. TurboJPEG's encoder runs the fast integer DCT
                # below q96 and the accurate one from q96, as the engine does (same bytes at q85).
            )
            packet = QueuePacket(data, frame, t_start, time.monotonic_ns())
            self.counters["frames_encoded"] += 1
            packet.t_publish_ns = time.monotonic_ns()
            self.packets.put(packet)  # a full packet queue holds the encoder, as the engine's pool does
            self.frames.task_done()

    # -- transport thread --------------------------------------------------------------------------

    def next_packet(self, timeout: float | None = None) -> QueuePacket | None:
        try:
            return self.packets.get(timeout=timeout)
        except queue.Empty:
            return None

    # -- between sessions --------------------------------------------------------------------------

    def reset(self) -> None:
        """Discard queued frames and packets, wait out the frame being encoded, restart pacing.

        Like the engine's claim of a track for a new session: nothing of the previous one comes out.
        """
        self._discard_frames()
        while self.frames.unfinished_tasks:  # the encoder is on a frame, maybe blocked on a full queue
            self._discard_packets()
            time.sleep(0.001)
        self._discard_packets()
        self.stopping.clear()
        self.pacer.reset()
        self._index = 0

    def _discard_frames(self) -> None:
        while True:
            try:
                self.frames.get_nowait()
            except queue.Empty:
                return
            self.frames.task_done()

    def _discard_packets(self) -> None:
        while True:
            try:
                self.packets.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        self.stopping.set()
        self._discard_frames()
        self.frames.put(None)
        while self._encoder.is_alive():
            self._discard_packets()  # an encoder blocked on a full packet queue must be able to finish
            self._encoder.join(0.05)
