"""Video tracks: ``VideoOut`` declares one on a model class; ``VideoTrack`` feeds its native ring.

A ``VideoTrack`` lives as long as the engine and owns nothing per session but counters: its
``FrameRing`` and ``Encoder`` are created once, when the engine loads (see ``engine.py``). ``emit`` and
``frame()`` run on the session thread (or a thread the model started) and cost one native call each
(``_C.FrameWriter``): it validates, stamps and paces the frame (``_C.FramePacer``), copies it with the
GIL released, commits it and records its latency; or it hands out a cached writable view of a slot
for the model to write in place (``frame()``). Neither allocates a Python object per frame, and on
the session thread neither runs Python for the poll point while nothing waits for one (``_poll``).
"""

from __future__ import annotations

import logging
import sys
import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reactor_engine import _C
from reactor_engine.context import get_ctx
from reactor_engine.errors import FrameError, InvalidArgumentError, NoActiveSession, ReactorTimeoutError
from reactor_engine.pacing import EmitLatency, FramePacer

if TYPE_CHECKING:
    from reactor_engine.context import SessionContext

__all__ = ["Track", "VideoOut", "VideoTrack"]

Frame = npt.NDArray[np.uint8]

_log = logging.getLogger("reactor_engine.tracks")


class VideoOut:
    """Declares a video output track on a model class: ``main_video = VideoOut(default=True)``.

    The track's name is the attribute's name. ``rate > 0`` fixes the emission rate (frames per
    second) of this track; ``0`` uses the engine's ``fps`` setting. ``width``/``height`` set the size of
    the black frame ``emit(None)`` sends before the first real frame (else the engine's default).
    On a model instance run by an engine, ``self.<name>`` is the running ``VideoTrack``.
    """

    kind = "video"
    direction = "recvonly"  # from the client's point of view, as in the seed-era capabilities

    def __init__(
        self, rate: float = 0.0, default: bool = False, width: int | None = None, height: int | None = None
    ) -> None:
        if rate < 0:
            raise ValueError(f"VideoOut rate must be >= 0 frames per second (0 = engine default); got {rate}")
        for label, value in (("width", width), ("height", height)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"VideoOut {label} must be a positive int; got {value!r}")
        self.rate = float(rate)
        self.default = default
        self.width = width
        self.height = height
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        running = getattr(instance, "__reactor_tracks__", {}).get(self.name)
        return running if running is not None else self

    def emit(self, frame: Any = None, bucket: int | None = None) -> None:
        raise NoActiveSession(
            f"track '{self.name}' is not attached to a running engine; start a session first"
        )

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "direction": self.direction}

    def __repr__(self) -> str:
        return f"VideoOut(name={self.name!r}, rate={self.rate}, default={self.default})"


Track = VideoOut  # seed-era (1.7.5) name of the declaration type


class VideoTrack:
    """The running output track: validates frames and commits them, paced, into its ``FrameRing``."""

    def __init__(
        self,
        name: str,
        ring: _C.FrameRing,
        encoder: _C.Encoder,
        *,
        width: int,
        height: int,
        fps: float,
        emit_timeout: float,
        max_fps: float = 0.0,
    ) -> None:
        self.name = name
        self.ring = ring
        self.encoder = encoder
        self.codecs: tuple[str, ...] = tuple(encoder.codecs)  # its outputs, the primary first
        self.max_width = ring.max_width
        self.max_height = ring.max_height
        self._default_size = (height, width)
        self.pacer = FramePacer(fps, max_fps=max_fps)
        self.emit_latency = EmitLatency(self.pacer)
        # The per-frame path (one native call per emit / acquire / commit); it keeps the last frame's
        # size, which emit(None) (a black frame) and frame() without a size use.
        self._writer = _C.FrameWriter(ring, self.pacer.native, emit_timeout, width, height)
        self._session: SessionContext | None = None
        # The packet consumer side: only ``owner`` (the session now using this track) pops packets,
        # under this lock, so claiming the track for a new session cannot race an old reader.
        self.consumer_lock = threading.Lock()
        self.owner: object | None = None
        self._converter: Any = None  # the core's CudaConverter, made on the first CUDA frame; False: none

    @property
    def width(self) -> int:
        return self._writer.width

    @property
    def height(self) -> int:
        return self._writer.height

    # What the core recorded of this session's commits (its pacer, reset at begin_session).
    @property
    def frames_committed(self) -> int:
        return self.pacer.native.frames_committed

    @property
    def first_commit_ns(self) -> int:
        return self.pacer.native.first_commit_ns

    @property
    def first_pts_ns(self) -> int:
        return self.pacer.native.first_pts_ns

    @property
    def last_pts_ns(self) -> int:
        return self.pacer.native.last_pts_ns

    # -- session binding (engine thread) ---------------------------------------------------------

    def claim(self, owner: object, flush_timeout: float) -> None:
        """Give the track to a new session, discarding every frame and packet of the previous one."""
        with self.consumer_lock:
            self.owner = owner
            self.ring.reset()
            self._release_packets()
            try:
                # A frame the encoder held while the packet pool was full is published now; drop it too.
                self.encoder.flush(flush_timeout)
            except ReactorTimeoutError:
                _log.warning("track '%s': encoder did not drain within %s s", self.name, flush_timeout)
            self._release_packets()

    def _release_packets(self) -> None:
        for codec in self.codecs:
            queue = self.encoder.queue_for(codec)
            while (packet := queue.try_pop()) is not None:
                packet.release()

    def queue(self, codec: str | None = None) -> _C.PacketQueue:
        """The packet queue of one of the track's outputs (``None``: the primary)."""
        if codec is None:
            return self.encoder.queue
        if codec not in self.codecs:
            raise InvalidArgumentError(
                f"track '{self.name}' has no {codec!r} output; its outputs are: {', '.join(self.codecs)} "
                f"(add one with the engine setting extra_codecs)"
            )
        return self.encoder.queue_for(codec)

    def begin_session(self, ctx: SessionContext) -> None:
        self._writer.disarm()
        self._session = ctx
        self._writer.set_size(self._default_size[1], self._default_size[0])
        self._writer.forget_latest()
        self._writer.take_poll_request()
        self.pacer.reset()

    def end_session(self) -> None:
        self._writer.disarm()
        self._session = None

    def request_poll(self) -> None:
        """Any thread: the next emit / frame() runs the whole poll point (a command or input is waiting)."""
        self._writer.request_poll()

    def interrupt(self) -> None:
        """Any thread: the session is stopping; a pacing wait in ``emit``/``frame()`` returns now."""
        self.pacer.stop()

    # -- producer side (session thread) ----------------------------------------------------------

    def emit(self, frame: Any = None, bucket: int | None = None) -> None:
        """Send ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 RGB frames; ``None`` sends one black frame.

        Takes numpy arrays, torch tensors (CPU or CUDA), and anything with ``__dlpack__`` or the buffer
        protocol. A poll point: queued commands are applied first. ``bucket`` is accepted for seed-era
        compatibility; each track here has its own ring, so no bucket has to wait for another track.
        """
        # A numpy frame (or None) on the session thread with nothing for the poll point to do: one
        # native call validates, paces, copies (GIL released) and commits it (see _poll).
        if bucket is None and self._writer.emit_fast(frame) > 0:
            return
        self._poll()
        if bucket is not None and (not isinstance(bucket, int) or bucket < 0):
            raise FrameError(f"bucket must be a non-negative int or None; got {bucket!r}")
        if frame is not None and type(frame) is not np.ndarray:
            if _is_cuda_tensor(frame) and self._emit_cuda(frame):
                return
            frame = self._to_numpy(frame)
        # Validation, pacing, the copy (GIL released), the commit and its bookkeeping: one native call.
        if not self._writer.emit(frame):  # not a frame the ring takes: say why
            self._check_frames(tuple(frame.shape), frame.dtype, frame.dtype == np.uint8)
            raise FrameError(f"frame of shape {frame.shape} cannot be read as a buffer; {self._takes()}")

    def frame(self, width: int | None = None, height: int | None = None) -> AbstractContextManager[Frame]:
        """Write one frame in place: ``with track.frame() as buf: buf[...] = ...`` (zero-copy).

        ``buf`` is a writable ``(height, width, 3)`` uint8 view of a ring slot (``torch.from_numpy(buf)``
        shares it); the size defaults to the last frame's. The slot is committed, paced, when the block
        exits, aborted if it raises. ``buf`` must not be used after the block (the slot then belongs to
        the encoder, and the same view is handed out again later). A poll point. Such frames are not
        kept for ``latest()``.
        """
        # The native writer is the context manager: entering and leaving the block are C calls.
        manager: AbstractContextManager[Frame] | None
        if width is None and height is None:
            manager = self._writer.frame_fast()  # None: the poll point has something to do
            if manager is not None:
                return manager
        self._poll()
        if width is not None or height is not None:
            self._check_size(
                self.height if height is None else height, self.width if width is None else width
            )
        manager = self._writer.frame(width or 0, height or 0)
        return manager

    def _poll(self) -> None:
        """The poll point of emit / frame() in Python, and arming its native half.

        Every wake-up of the session (a queued command, a stop, new input) requests a poll point of the
        writer; the request is taken before the commands are applied, so one queued meanwhile is seen at
        the next emit. On the session thread of a session without media polling (inputs), the writer is
        then armed: the next emits skip this method until something requests a poll point again (or
        the command state is due to be read again). Another thread's emit only checks the session: the
        commands are the session thread's to apply, so the request stays for that thread's next poll point.
        """
        ctx = get_ctx()  # raises NoActiveSession outside a session or once it ended
        if ctx is not self._session:
            raise self._not_in(ctx)
        if not ctx._on_session_thread():
            return
        self._writer.take_poll_request()
        ctx._poll_point()
        quiet_ns = ctx._quiet_ns()
        if quiet_ns is not None:
            self._writer.arm(quiet_ns)

    def _emit_cuda(self, tensor: Any) -> bool:
        """CUDA uint8 frames straight into ring slots through the core's converter; False without it."""
        converter = self._cuda_converter()
        if converter is None:
            return False
        self._check_frames(tuple(tensor.shape), tensor.dtype, tensor.dtype == sys.modules["torch"].uint8)
        batch = tensor.detach() if tensor.dim() == 4 else tensor.detach()[None]
        height, width = int(batch.shape[1]), int(batch.shape[2])
        stream = sys.modules["torch"].cuda.current_stream(tensor.device).cuda_stream
        writer = self._writer
        for i, one in enumerate(batch):
            one = one.contiguous()
            slot = writer.acquire(width, height)
            try:
                converter.convert(one.data_ptr(), "uint8", "hwc", "0_255", width, height, slot, stream)
            except BaseException:
                writer.abort()
                raise
            writer.commit(int(batch.shape[0]) if i == 0 else 0)  # paced as one batch
        writer.forget_latest()
        return True

    def _cuda_converter(self) -> Any:
        if self._converter is None:
            from reactor_engine import _C

            available = hasattr(_C, "CudaConverter") and _C.cuda_status().startswith("available")
            self._converter = _C.CudaConverter(self.max_width, self.max_height) if available else False
        return self._converter or None

    def latest(self) -> Frame | None:
        """The last frame passed to ``emit`` in this session (a reference, not a copy), else ``None``."""
        latest, batch = self._writer.latest()
        frame: Frame | None = latest[-1] if latest is not None and batch else latest
        return frame

    def _not_in(self, ctx: SessionContext) -> NoActiveSession:
        return NoActiveSession(
            f"track '{self.name}' is not part of session {ctx.session_id}; it was ended or never started"
        )

    # -- validation ------------------------------------------------------------------------------

    def _takes(self) -> str:
        return f"track '{self.name}' takes (H, W, 3) or (N, H, W, 3) uint8 RGB"

    def _check_size(self, height: int, width: int) -> None:
        if height <= 0 or width <= 0:
            raise FrameError(f"frame is {width}x{height}; {self._takes()} with H, W >= 1")
        if width > self.max_width or height > self.max_height:
            raise FrameError(
                f"frame is {width}x{height} (WxH); track '{self.name}' takes at most "
                f"{self.max_width}x{self.max_height} (raise --engine.max_width / --engine.max_height)"
            )

    def _check_frames(self, shape: tuple[int, ...], dtype: object, is_uint8: bool) -> None:
        # dtype is named only in an error: str(np.dtype) costs more than the rest of the check.
        if len(shape) not in (3, 4):
            raise FrameError(f"frame has shape {shape}; {self._takes()}")
        if shape[-1] != 3:
            hint = ""
            if shape[-1] == 4:
                hint = " (drop the alpha channel: frame[..., :3])"
            elif shape[-3] == 3:
                hint = " (it looks channel-first; permute to channel-last)"
            raise FrameError(f"frame has shape {shape}; {self._takes()}{hint}")
        if not is_uint8:
            convert = (
                "(x * 255).clamp(0, 255).to(torch.uint8)"
                if str(dtype).startswith("torch.")
                else ("(x * 255).clip(0, 255).astype(uint8)")
            )
            raise FrameError(
                f"frame has dtype {dtype}; {self._takes()} with values 0-255 "
                f"(convert floats in [0, 1] with {convert})"
            )
        if len(shape) == 4 and shape[0] == 0:
            raise FrameError(f"frame batch has shape {shape}: no frames; {self._takes()}")
        self._check_size(shape[-3], shape[-2])

    def _to_numpy(self, frame: Any) -> npt.NDArray[Any]:
        if isinstance(frame, np.ndarray):
            return frame
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(frame, torch.Tensor):
            if frame.dtype != torch.uint8:
                self._check_frames(tuple(frame.shape), frame.dtype, False)
            return _torch_to_numpy(frame)
        if hasattr(frame, "__dlpack__"):
            try:
                return np.from_dlpack(frame)
            except (BufferError, RuntimeError, TypeError) as exc:
                raise FrameError(
                    f"cannot read a {type(frame).__name__} frame through DLPack ({exc}); "
                    f"{self._takes()} in host memory"
                ) from None
        try:
            view = memoryview(frame)
        except TypeError:
            raise FrameError(
                f"frame is a {type(frame).__name__}; {self._takes()} as a numpy array, a torch tensor, "
                f"or an object with __dlpack__ or the buffer protocol"
            ) from None
        return np.asarray(view)


def _is_cuda_tensor(frame: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(frame, torch.Tensor) and frame.device.type == "cuda"


def _torch_to_numpy(tensor: Any) -> npt.NDArray[Any]:
    """A host view of a uint8 torch tensor (the caller has checked the dtype)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        # Note: a blocking device->host copy, taken only where the core has no CUDA converter.
        tensor = tensor.cpu()
    array: npt.NDArray[Any] = tensor.numpy()
    return array
