"""Type stubs of the native core ``reactor_engine._C`` (checked against the module by tests/test_stubs.py)."""

import sys
from types import TracebackType
from typing import Any

from typing_extensions import Buffer, CapsuleType

__version__: str

def now_ns() -> int:
    """Nanoseconds on the core's steady clock (the same clock as ``time.monotonic_ns``)."""

def build_info() -> dict[str, str]:
    """Build features: ``cuda``, ``cuda_reason``, ``cuda_archs``, ``jpeg``, ``vp8``, ``compiler``,
    ``build_type``."""

def cuda_status() -> str:
    """``"available: <device>"`` or ``"unavailable: <reason>"``, found at run time."""

class HostArena:
    """One page-aligned, prefaulted host region, pinned as far as the machine permits."""

    def __init__(
        self, nbytes: int, *, lock: bool = True, cuda_register: bool = True, hugepages: bool = True
    ) -> None: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def pinning(self) -> str:
        """``"cuda"``, ``"mlock"`` or ``"none: <why>"``."""
    @property
    def locked(self) -> bool: ...
    @property
    def cuda_registered(self) -> bool: ...
    @property
    def cuda(self) -> str:
        """``"registered"``, ``"disabled"`` or ``"unavailable: <why>"``."""
    @property
    def hugepages(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def allocate(self, nbytes: int, alignment: int = 64) -> int:
        """Carve ``nbytes`` at ``alignment``; returns the offset. ``AllocationError`` when full."""
    def view(self, offset: int, nbytes: int) -> memoryview:
        """A writable zero-copy view; it keeps the mapping alive after ``close()``."""
    def close(self) -> None: ...
    def __enter__(self) -> HostArena: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

class FrameSlot:
    """A slot acquired for writing: ``(height, width, 3)`` uint8, writable, zero-copy."""

    @property
    def index(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def dropping(self) -> bool:
        """True when the ring was full under ``drop_newest``: the commit will count a drop."""
    @property
    def t_acquire_ns(self) -> int: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> CapsuleType: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...

class FrameRing:
    """N preallocated frame slots, one producer, one consumer (the encoder)."""

    def __init__(
        self,
        slots: int,
        max_width: int,
        max_height: int,
        policy: str = "block",
        *,
        arena: HostArena | None = None,
    ) -> None: ...
    @property
    def slots(self) -> int: ...
    @property
    def max_width(self) -> int: ...
    @property
    def max_height(self) -> int: ...
    @property
    def slot_bytes(self) -> int: ...
    @property
    def policy(self) -> str: ...
    @property
    def pinning(self) -> str: ...
    @property
    def ready(self) -> int:
        """Committed frames not yet taken by the encoder."""
    @property
    def closed(self) -> bool: ...
    def acquire(self, width: int, height: int, timeout: float | None = None) -> FrameSlot: ...
    def commit(self, slot: FrameSlot, frame_index: int | None = None, pts_ns: int | None = None) -> int: ...
    def abort(self, slot: FrameSlot) -> None: ...
    def write(
        self,
        frame: Buffer,
        frame_index: int | None = None,
        pts_ns: int | None = None,
        timeout: float | None = None,
    ) -> int: ...
    def reset(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...

class FramePacer:
    """The core's frame pacer: pts stamps on the core's clock, the producer's interruptible wait, and
    the record of the session's commits (``VideoTrack`` reads it; ``pacing.FramePacer`` wraps it)."""

    def __init__(self, fps: float, max_fps: float = 0.0) -> None: ...
    @property
    def fps(self) -> float: ...
    @property
    def max_fps(self) -> float: ...
    @property
    def measured_fps(self) -> float: ...
    @property
    def late_frames(self) -> int: ...
    @property
    def frames_committed(self) -> int: ...
    @property
    def first_commit_ns(self) -> int: ...
    @property
    def first_pts_ns(self) -> int: ...
    @property
    def last_pts_ns(self) -> int: ...
    @property
    def stopped(self) -> bool: ...
    def reset(self) -> None: ...
    def stop(self) -> None:
        """Any thread: ends the current pacing wait, and every later one until ``reset()``."""
    def begin_batch(self, frames: int, now_ns: int) -> None: ...
    def next_frame(self, now_ns: int) -> tuple[int, int]:
        """``(pts_ns, wait_ns)`` of the next frame."""
    def wait_until(self, due_ns: int) -> bool:
        """Waits (GIL released) until ``due_ns`` on the core's clock; False when cut short by ``stop()``."""
    def emit_latency_ns(self) -> Any:
        """The kept emit latency samples (ns) as a new int64 ndarray."""

class FrameWriter:
    """A track's per-frame path: one call per paced copying emit, per slot acquire, per commit."""

    def __init__(
        self, ring: FrameRing, pacer: FramePacer, timeout: float | None, width: int, height: int
    ) -> None: ...
    @property
    def width(self) -> int:
        """The last frame's width (what ``emit(None)`` and ``acquire(0, 0)`` use)."""
    @property
    def height(self) -> int: ...
    @property
    def holding(self) -> bool: ...
    def set_size(self, width: int, height: int) -> None: ...
    def emit(self, frame: Any, /) -> int:
        """Writes, paced: 3 or 4 (the frame's ndim); 0 if not (H, W, 3) / (N, H, W, 3) uint8 in size."""
    def emit_fast(self, frame: Any, /) -> int:
        """``emit(frame)`` when armed, on the arming thread, with no poll requested and ``frame`` an
        ndarray or None; else -1 and nothing is done."""
    def frame_fast(self) -> FrameWriter | None:
        """``frame(0, 0)`` under the same conditions as ``emit_fast``; else None."""
    def arm(self, valid_ns: int) -> None:
        """From the session thread: ``emit_fast``/``frame_fast`` may act on this thread for ``valid_ns``
        (-1: until disarmed or a poll is requested)."""
    def disarm(self) -> None: ...
    @property
    def armed(self) -> bool: ...
    def request_poll(self) -> None:
        """Any thread: the next ``emit_fast``/``frame_fast`` returns -1/None (the poll point has work)."""
    def take_poll_request(self) -> bool:
        """Clears the request; True if there was one."""
    def latest(self) -> tuple[Any, bool]:
        """The last frame emitted (None after ``frame()`` or ``forget_latest``) and whether it was a batch."""
    def forget_latest(self) -> None: ...
    def acquire(self, width: int, height: int, /) -> Any:
        """A writable (height, width, 3) uint8 ndarray view of a slot (0, 0: the last size)."""
    def commit(self, batch: int, /) -> None: ...
    def abort(self) -> None: ...
    def frame(self, width: int, height: int, /) -> FrameWriter:
        """Itself, as the context manager of ``VideoTrack.frame()`` for a slot of that size (0: the last)."""
    def __enter__(self) -> Any: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> bool: ...

class Packet:
    """One encoded frame in a pooled buffer; read-only buffer protocol; back to the pool on release."""

    @property
    def codec(self) -> str:
        """``"raw"``, ``"i420"``, ``"jpeg"`` or ``"vp8"``."""
    @property
    def keyframe(self) -> bool:
        """Decodable on its own: every raw, I420 and JPEG packet; VP8 key frames."""
    @property
    def frame_index(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def pts_ns(self) -> int: ...
    @property
    def t_acquire_ns(self) -> int: ...
    @property
    def t_commit_ns(self) -> int: ...
    @property
    def t_encode_start_ns(self) -> int: ...
    @property
    def t_encode_end_ns(self) -> int: ...
    @property
    def t_publish_ns(self) -> int: ...
    @property
    def released(self) -> bool: ...
    def tobytes(self) -> bytes: ...
    def release(self) -> None: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...

    def __len__(self) -> int: ...
    def __enter__(self) -> Packet: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

class PacketQueue:
    """Bounded, preallocated queue of encoded packets with an eventfd for asyncio."""

    @property
    def capacity(self) -> int: ...
    @property
    def max_packet_bytes(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def pop(self, timeout: float | None = None) -> Packet: ...
    def try_pop(self) -> Packet | None: ...
    def fileno(self) -> int: ...
    def clear_event(self) -> None: ...
    def close(self) -> None: ...

class Encoder:
    """One native thread: drains committed slots, encodes, publishes packets. Starts at construction.

    Outputs: ``codec`` (the primary, enabled) and each of ``extra_codecs`` (disabled until
    ``set_output_enabled``), each with its own ``PacketQueue``; every enabled output encodes each frame
    once, a disabled one runs no codec. The thread waits for a free primary buffer (frames wait in the
    ring meanwhile); an extra output with no free buffer drops that frame (``output_stats``).
    VP8 (libvpx, realtime, no lag frames, error-resilient, CBR at ``bitrate`` bits/s): ``vp8_speed`` is
    libvpx's cpu-used (-16..16: negative fixes the speed at its magnitude, 16 fastest; positive adapts it
    to spend at most (16 - speed)/16 of the frame interval), ``vp8_threads`` its threads (1..16),
    ``keyframe_interval`` frames between automatic key frames (0: the first and requested ones only).
    JPEG: ``jpeg_threads`` (1..16) threads per frame: a frame of at least 256 Ki pixels is cut into
    stripes encoded at once (the encoder thread and ``jpeg_threads - 1`` helpers named
    ``reactor-jpeg-N``, scheduled as the encoder thread) and joined with restart markers; 1 makes
    TurboJPEG's bytes.
    """

    def __init__(
        self,
        ring: FrameRing,
        codec: str = "jpeg",
        quality: int = 90,
        subsampling: str = "420",
        queue_capacity: int = 8,
        *,
        extra_codecs: list[str] = [],  # the native default, never mutated
        bitrate: int = 2000000,
        vp8_speed: int = -12,
        vp8_threads: int = 1,
        keyframe_interval: int = 300,
        scheduling: str = "batch",
        jpeg_threads: int = 1,
    ) -> None: ...
    @property
    def scheduling(self) -> str:
        """The encoder thread's policy as applied: ``"batch"`` (its wake-ups never preempt the thread
        that committed) or ``"normal"``; ``"normal"`` also when the kernel refused ``"batch"``."""
    @property
    def scheduling_error(self) -> int:
        """The errno of applying the requested policy; 0 when it was applied."""
    @property
    def codec(self) -> str:
        """The primary output's codec."""
    @property
    def codecs(self) -> list[str]:
        """Every output's codec, the primary first."""
    @property
    def quality(self) -> int: ...
    @property
    def subsampling(self) -> str: ...
    @property
    def vp8_speed(self) -> int: ...
    @property
    def vp8_threads(self) -> int: ...
    @property
    def keyframe_interval(self) -> int: ...
    @property
    def jpeg_threads(self) -> int: ...
    @property
    def queue(self) -> PacketQueue:
        """The primary output's queue."""
    def queue_for(self, codec: str) -> PacketQueue:
        """That output's queue; ``InvalidArgumentError`` naming the outputs if there is none."""
    @property
    def running(self) -> bool: ...
    def set_output_enabled(self, codec: str, enabled: bool) -> None:
        """From the next frame on; enabling an output makes its next frame a key frame. Any thread."""
    def output_enabled(self, codec: str) -> bool: ...
    def output_stats(self, codec: str) -> dict[str, Any]:
        """``enabled``, ``frames_encoded``, ``keyframes``, ``bytes``, ``frames_dropped`` of one output."""
    def request_keyframe(self) -> None:
        """Every output's next frame is a key frame. Any thread; releases the GIL."""
    def set_bitrate(self, bps: int) -> None:
        """The VP8 target from the next frame on (10 kbit/s to 1 Gbit/s). Any thread; releases the GIL."""
    @property
    def bitrate(self) -> int:
        """The target bitrate in force, bits per second."""
    def inject_error_for_tests(self, codec: str | None = None) -> None:
        """Fault injection: the next frame of that output (``None``: the primary) fails to encode, as a
        codec failure does (``encode_errors`` counted, ``EncodeError`` stashed and raised once at the
        next producer, consumer or owner call). For tests only."""
    def flush(self, timeout: float | None = None) -> None: ...
    def check(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Encoder: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

class CudaConverter:
    """Converts a CUDA frame into packed RGB24 in host memory, on its own stream; no allocation per call.

    Floats map to bytes as ``(x + offset) * scale`` in float32 (``"0_1"``: 0, 255; ``"-1_1"``: 1, 127.5),
    then NaN → 0, clamp to [0, 255], round half to even. ``CudaError`` on construction where CUDA is
    unavailable (the message says why; see ``cuda_status()``).
    """

    def __init__(self, max_width: int, max_height: int) -> None: ...
    @property
    def max_width(self) -> int: ...
    @property
    def max_height(self) -> int: ...
    def convert(
        self,
        src_ptr: int,
        dtype: str,
        layout: str,
        value_range: str,
        width: int,
        height: int,
        dst: Buffer,
        stream: int = 0,
    ) -> None:
        """Converts the C-contiguous 3-channel frame at device address ``src_ptr`` into ``dst``.

        ``dtype``: ``"uint8"``, ``"float16"``, ``"float32"``; ``layout``: ``"hwc"``, ``"chw"``;
        ``value_range``: ``"0_255"`` (uint8), ``"0_1"`` or ``"-1_1"`` (floats). ``dst``: a writable
        uint8 buffer of at least ``width * height * 3`` bytes (shape ``(height, width, 3)`` if 3-D).
        Work starts after what is queued on ``stream`` (a ``cudaStream_t``; 0: the default stream);
        returns once ``dst`` holds the frame. Releases the GIL meanwhile.
        """

class InputFrame:
    """A decoded input frame returned by ``InputRing.read()``/``current()``; immutable.

    ``array`` is a READ-ONLY zero-copy ``(height, width, 3)`` uint8 view of the ring slot that keeps
    the ring's memory alive; the ring holds the slot for the reader until ``release_held()`` (the
    current frame: until a newer one is read, or ``reset()``)."""

    @property
    def array(self) -> Any: ...
    @property
    def index(self) -> int:
        """Per-ring counter from 0 since construction or ``reset()``."""
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def capture_ns(self) -> int: ...
    @property
    def arrival_ns(self) -> int: ...
    @property
    def ready_ns(self) -> int:
        """When it was committed (decoded or copied), on the core clock."""
    @property
    def keyframe(self) -> bool: ...

class InputRing:
    """Preallocated RGB24 slots of decoded client input; producers (decoders, ``write``) never wait for
    the reader (a full ring recycles its oldest ready frame, counted ``frames_dropped``); one reader."""

    def __init__(self, slots: int, max_width: int, max_height: int) -> None: ...
    @property
    def slots(self) -> int: ...
    @property
    def max_width(self) -> int: ...
    @property
    def max_height(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def write(self, frame: Buffer, capture_ns: int = -1, arrival_ns: int = -1) -> int:
        """Copies an ``(H, W, 3)`` uint8 frame (any strides; GIL released); returns its index, or -1 when
        a ``reset()`` raced it. Larger than the slots: ``FrameError`` naming both sizes (``frames_refused``).
        ``ClosedError`` after ``close()``. -1 times: now (capture defaults to arrival)."""
    def read(self, n: int = 1, latest: bool = True, timeout: float | None = 0.0) -> list[InputFrame]:
        """``latest``: at most the newest ready frame (older ready ones are skipped, ``frames_skipped``);
        else up to ``n`` oldest first. ``timeout``: 0 no wait, ``None`` until a frame, ``close()`` or
        ``wake()``, > 0 seconds (GIL released). Returned frames are held; never more than ``slots - 1``."""
    def current(self) -> InputFrame | None:
        """The newest frame ``read()`` returned, still held; ``None`` before it and after ``reset()``."""
    def release_held(self) -> None:
        """Frees every held frame except the current one (the poll point)."""
    def reset(self) -> int:
        """New session: drops ready, held and current frames, index back to 0; returns how many."""
    def wake(self) -> None:
        """A waiting ``read()`` returns now; with none waiting, the next waiting read returns at once."""
    def close(self) -> None: ...
    def stats(self) -> dict[str, Any]:
        """``frames_in``, ``frames_read``, ``frames_skipped``, ``frames_dropped``, ``frames_refused``,
        ``ready``, ``held``, and ``latency``: ``arrival_to_ready``, ``ready_to_read`` (count, p50, p90,
        p99, p999, max, mean in ns)."""

class Decoder:
    """One native thread decoding submitted packets (``"vp8"`` with libvpx, ``"jpeg"`` with TurboJPEG)
    into an ``InputRing``; packet buffers and codec buffers are preallocated at construction.

    ``queue_capacity`` packets wait (a full queue drops its oldest, ``packets_dropped``). VP8: after a
    dropped packet, a corrupt frame or a refused one, delta frames are discarded (``frames_discarded``)
    until a key frame decodes, and ``need_keyframe`` is True meanwhile. A corrupt payload counts in
    ``decode_errors``, a frame larger than the ring's slots in ``frames_refused``; ``last_error()`` says
    what, and the next packet goes on."""

    def __init__(
        self, ring: InputRing, codec: str, queue_capacity: int = 8, max_packet_bytes: int = 2097152
    ) -> None: ...
    @property
    def codec(self) -> str: ...
    @property
    def ring(self) -> InputRing: ...
    @property
    def queue_capacity(self) -> int: ...
    @property
    def max_packet_bytes(self) -> int: ...
    @property
    def need_keyframe(self) -> bool: ...
    @property
    def keyframe_requests(self) -> int:
        """Times ``need_keyframe`` went from False to True."""
    @property
    def running(self) -> bool: ...
    def submit(self, data: Buffer, capture_ns: int = -1, arrival_ns: int = -1) -> str:
        """Copies a C-contiguous packet (GIL released); ``"queued"`` or ``"dropped_oldest"``. Empty or
        larger than ``max_packet_bytes``: ``FrameError`` (``packets_refused``). ``ClosedError`` after
        close."""
    def last_error(self) -> str | None: ...
    def reset(self, timeout: float = 2.0) -> None:
        """New session: drops queued packets, waits until the thread is idle with its codec state reset
        (``ReactorTimeoutError`` after ``timeout``); clears ``last_error``. Call it before
        ``InputRing.reset``."""
    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until every packet submitted so far is decoded or dropped; False on timeout."""
    def hold_for_tests(self, hold: bool) -> None:
        """For tests: while held the thread takes no packet, so they queue up and drop (oldest first) as
        behind a slow decoder; ``reset()`` is still served."""
    def close(self) -> None: ...
    def stats(self) -> dict[str, Any]:
        """``packets_in``, ``packets_dropped``, ``packets_refused``, ``frames_decoded``, ``frames_discarded``,
        ``frames_refused``, ``decode_errors``, ``resolution_changes``, ``keyframe_requests``, ``queued``, and
        ``latency``: ``queue_wait`` (submit to decode start), ``decode`` (decode start to the frame ready)."""

class AudioRing:
    """A preallocated FIFO of interleaved int16 sample frames (one sample per channel), one producer and
    one consumer; a full ring overwrites its oldest frames (``frames_dropped``). ``fileno()`` is an eventfd
    readable while at least ``notify_frames`` (at least 1) are buffered, or the ring is closed."""

    def __init__(self, rate: int, channels: int, capacity_frames: int, notify_frames: int = 0) -> None: ...
    @property
    def rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def capacity_frames(self) -> int: ...
    @property
    def notify_frames(self) -> int: ...
    @property
    def available(self) -> int:
        """Frames buffered."""
    @property
    def closed(self) -> bool: ...
    def write(self, pcm: Buffer, pts_ns: int = -1) -> int:
        """Copies C-contiguous int16 interleaved samples (or bytes of native int16; a whole number of frames,
        else ``InvalidArgumentError``), GIL released. ``pts_ns``: the core-clock time of its first frame
        (-1: now). Returns how many frames were dropped to make room. ``ClosedError`` after close."""
    def read_into(self, out: Buffer, min_frames: int = 1, timeout: float | None = 0.0) -> tuple[int, int]:
        """Reads up to ``len(out) // channels`` frames into a writable C-contiguous int16 buffer once
        ``min_frames`` are buffered (or on timeout / ``close()`` / ``wake()``: whatever is there). Returns
        ``(frames, pts_ns of the first frame read)``; pts is -1 when no frame was read."""
    def fileno(self) -> int: ...
    def clear_event(self) -> None:
        """Drains the eventfd; it is readable again at once while enough frames remain (or closed)."""
    def reset(self) -> int:
        """Drops what is buffered; returns how many frames."""
    def wake(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, Any]:
        """``frames_in``, ``frames_out``, ``frames_dropped``, ``writes``, ``reads``, ``available``."""
