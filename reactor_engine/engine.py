"""``Engine``: one model instance, its native rings and encoders, and one session at a time.

Embedding::

    with Engine(MyModel, engine_config={"codec": "jpeg"}) as engine:
        with engine.session() as session:
            session.send_command("set_prompt", {"prompt": "a rainy night"})
            for packet in session.packets(timeout=5.0):
                with packet:
                    handle(bytes(packet))

States: ``loading → ready → starting → streaming → stopping → ready``, plus ``error`` (the model failed
to load), ``unhealthy`` (a session's model ignored ``should_stop()`` past the grace period; the engine
returns to ``ready`` if that thread ever returns) and ``closed``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from omegaconf import DictConfig

from reactor_engine import heap
from reactor_engine.audio import AudioOutputTrack
from reactor_engine.config import EngineConfig, load_engine_config, load_model_config
from reactor_engine.errors import ClosedError, EngineBusy, ModelError, StateError
from reactor_engine.inputs import CODECS, AudioInputTrack, InputTrack, VideoInputTrack
from reactor_engine.media import AudioIn, VideoIn
from reactor_engine.model import VideoModel, load_model_class, model_spec, set_engine_weights_dir
from reactor_engine.session import Session
from reactor_engine.tracks import VideoTrack

if TYPE_CHECKING:
    from reactor_engine import _C

__all__ = ["Engine", "EngineState"]

_log = logging.getLogger("reactor_engine.engine")

EngineState = Literal["loading", "ready", "starting", "streaming", "stopping", "error", "unhealthy", "closed"]


class Engine:
    """Runs one ``@model`` class: instantiates it once, owns the native core, serves sessions one at a time.

    ``model_or_target``: a ``@model`` class, ``module:Class``, a model file or a folder.
    ``model_config``: overrides on top of the model's config file (a mapping, or ``["KEY=VALUE", ...]``),
    or a complete ``DictConfig``. ``engine_config``: engine settings over ``configs/default.yaml``
    (a mapping, ``["KEY=VALUE", ...]`` or an ``EngineConfig``). ``config_file``: a ``-c`` file layered
    on the model's config. With ``load=False`` call ``load()`` yourself (``load(background=True)``
    lets a server answer health checks while weights load).
    """

    def __init__(
        self,
        model_or_target: type[VideoModel] | str | os.PathLike[str],
        model_config: Mapping[str, Any] | Sequence[str] | DictConfig | None = None,
        engine_config: Mapping[str, Any] | Sequence[str] | EngineConfig | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        load: bool = True,
    ) -> None:
        self.config = load_engine_config(engine_config)
        self.model_class = load_model_class(model_or_target)
        self.spec = model_spec(self.model_class)
        if isinstance(model_config, DictConfig):
            self.model_config = model_config
        else:
            self.model_config = load_model_config(self.spec.config_path, config_file, model_config)
        self.model: VideoModel | None = None
        self.tracks: dict[str, VideoTrack] = {}
        self.inputs: dict[str, InputTrack] = {}  # VideoIn / AudioIn tracks, by name
        self.audio_outputs: dict[str, AudioOutputTrack] = {}
        self._encoders: list[_C.Encoder] = []
        self._rings: list[_C.FrameRing] = []
        self._lock = threading.RLock()
        self._state: EngineState = "loading"
        self._reason = ""
        self._loaded = threading.Event()
        self._load_thread: threading.Thread | None = None
        self._session: Session | None = None
        self._stuck: Session | None = None
        self.error: str | None = None
        self._load_exception: Exception | None = None
        if load:
            self.load()

    @property
    def name(self) -> str:
        return self.spec.name

    # -- loading ---------------------------------------------------------------------------------

    def load(self, background: bool = False) -> None:
        """Allocate the core and instantiate the model (its ``__init__`` runs here, once).

        With ``background=True`` this returns at once; ``state`` is ``loading`` until it is ``ready`` or
        ``error``, and ``wait_ready()`` waits for it. Otherwise a load failure raises ``ModelError``.
        """
        with self._lock:
            if self._loaded.is_set() or self._load_thread is not None:
                raise StateError(f"engine for model '{self.name}' is already {self._state}")
            if background:
                self._load_thread = threading.Thread(
                    target=self._load, name="reactor-model-load", daemon=True
                )
                # A process that exits while the model loads gives the load up to stop_grace to end
                # first: a daemon thread still inside a native call (torch's, say) when the interpreter
                # finalizes makes CPython 3.11 end it with a forced unwind, and the process aborts.
                atexit.register(self._loaded.wait, self.config.stop_grace)
                self._load_thread.start()
                return
        self._load()
        if self._state == "error":
            raise ModelError(f"model '{self.name}' failed to load: {self.error}") from self._load_exception

    def wait_ready(self, timeout: float | None = None) -> EngineState:
        """Wait for a background load to finish; returns the state (``ready`` or ``error``)."""
        self._loaded.wait(timeout)
        return self._state

    def _load(self) -> None:
        try:
            self._create_tracks()
            weights_dir = self.config.weights_dir
            set_engine_weights_dir(Path(weights_dir).expanduser() if weights_dir else None)
            instance = self.model_class(config=self.model_config)
            # ``self.<track>`` on the instance now resolves to the running track (see VideoOut.__get__).
            running = {**self.tracks, **self.inputs, **self.audio_outputs}
            object.__setattr__(instance, "__reactor_tracks__", running)
            self.model = instance
        except Exception as exc:
            _log.exception("model '%s' failed to load", self.name)
            self._close_core()
            with self._lock:
                self.error = f"{type(exc).__name__}: {exc}"
                self._state = "error"
                self._reason = f"model failed to load: {self.error}"
            self._load_exception = exc
        else:
            with self._lock:
                self._state = "ready"
                self._reason = ""
        finally:
            self._loaded.set()

    def _create_tracks(self) -> None:
        from reactor_engine import _C

        cfg = self.config
        for name, declared in self.spec.tracks.items():
            ring = _C.FrameRing(cfg.ring_slots, cfg.max_width, cfg.max_height, cfg.ring_policy)
            self._rings.append(ring)
            encoder = _C.Encoder(
                ring, codec=cfg.codec, quality=cfg.quality, subsampling=cfg.subsampling,
                queue_capacity=cfg.packet_queue, extra_codecs=list(cfg.extra_codecs), bitrate=cfg.bitrate,
                vp8_speed=cfg.vp8_speed, vp8_threads=cfg.vp8_threads, keyframe_interval=cfg.keyframe_interval,
                scheduling=cfg.encoder_scheduling, jpeg_threads=cfg.jpeg_threads,
            )  # fmt: skip
            if encoder.scheduling != cfg.encoder_scheduling:
                _log.warning(
                    "track '%s': the kernel refused encoder_scheduling=%s (%s); its encoder thread runs %s",
                    name, cfg.encoder_scheduling, os.strerror(encoder.scheduling_error), encoder.scheduling,
                )  # fmt: skip
            self._encoders.append(encoder)
            width = min(declared.width or cfg.width, cfg.max_width)
            height = min(declared.height or cfg.height, cfg.max_height)
            fps = self._track_fps(name, declared.rate or self.spec.emission_fps)
            self.tracks[name] = VideoTrack(
                name,
                ring,
                encoder,
                width=width,
                height=height,
                fps=fps,
                emit_timeout=cfg.emit_timeout,
                max_fps=cfg.max_fps,
            )
        self._create_media()

    def _create_media(self) -> None:
        """One ``InputRing`` and a VP8 and a JPEG ``Decoder`` per ``VideoIn``; an ``AudioRing`` per
        ``AudioIn`` / ``AudioOut``. Made once, here; reset at each session start."""
        from reactor_engine import _C

        cfg = self.config
        for name, declared in self.spec.inputs.items():
            if isinstance(declared, VideoIn):
                ring = _C.InputRing(cfg.input_slots, cfg.input_max_width, cfg.input_max_height)
                # Registered before its decoders, so a failing constructor below still closes it.
                track = VideoInputTrack(name, ring, {}, rate=declared.rate)
                self.inputs[name] = track
                for codec in CODECS:
                    track.decoders[codec] = _C.Decoder(ring, codec, cfg.input_queue, cfg.input_max_bytes)
            elif isinstance(declared, AudioIn):
                rate = int(declared.rate) or cfg.audio_rate
                mic = _C.AudioRing(rate, declared.channels, rate * cfg.audio_buffer_ms // 1000)
                self.inputs[name] = AudioInputTrack(name, mic)
        for name, out in self.spec.audio_outputs.items():
            rate = int(out.rate)
            sound = _C.AudioRing(rate, out.channels, rate * cfg.audio_buffer_ms // 1000, rate // 50)
            self.audio_outputs[name] = AudioOutputTrack(name, sound)

    def _track_fps(self, track: str, in_code: float | None) -> float:
        """The engine setting (``--engine.fps``, ``engine_config``) beats the rate in the model's code."""
        setting = self.config.fps
        if setting > 0 and in_code and setting != in_code:
            _log.info(
                "track '%s': engine fps %g overrides the model's %g (VideoOut(rate=...) / emission_fps)",
                track, setting, in_code,
            )  # fmt: skip
        return setting or in_code or 0.0

    # -- state -----------------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def state_reason(self) -> str:
        """Why the engine is in ``error`` or ``unhealthy``; empty otherwise."""
        return self._reason

    def health(self) -> dict[str, Any]:
        session = self._session
        return {
            "model": self.name,
            "state": self._state,
            "reason": self._reason,
            "session_id": session.session_id if session is not None and not session.ended else None,
        }

    @property
    def model_thread_alive(self) -> bool:
        """True while a session's ``start_session()`` still runs: a hung model (it ignored
        ``should_stop()``) keeps its thread after ``close()``; a host about to exit may need to know."""
        session = self._session
        return session is not None and session._thread.is_alive()

    @property
    def current_session(self) -> Session | None:
        """The running session, if any."""
        session = self._session
        return session if session is not None and not session.ended else None

    # -- sessions --------------------------------------------------------------------------------

    def session(self, session_id: str | None = None) -> Session:
        """Start a session: ``start_session()`` runs on a new session thread. One at a time.

        Raises ``EngineBusy`` while another session runs (or a hung one has not returned), and
        ``StateError`` while loading or after a load failure.
        """
        with self._lock:
            if self._state == "closed":
                raise ClosedError(f"engine for model '{self.name}' is closed")
            if self._state == "loading":
                raise StateError(f"engine for model '{self.name}' is still loading; wait_ready() first")
            if self._state == "error":
                raise StateError(f"engine for model '{self.name}' cannot start sessions: {self._reason}")
            if self._stuck is not None:
                raise EngineBusy(f"engine is unhealthy: {self._reason}")
            running = self.current_session
            if running is not None:
                raise EngineBusy(
                    f"session {running.session_id} is {running.state}; this engine runs one session at a "
                    f"time (stop it first)"
                )
            assert self.model is not None
            sid = session_id or uuid.uuid4().hex
            session = Session(
                self,
                sid,
                model=self.model,
                tracks=self.tracks,
                default_track=self.spec.default_track,
                message_capacity=self.config.message_queue,
                stop_grace=self.config.stop_grace,
                max_duration=self.config.max_session_duration,
                inputs=self.inputs,
                audio_outputs=self.audio_outputs,
            )
            for track in self.tracks.values():
                track.claim(session, self.config.flush_timeout)
                track.begin_session(session.context)
            for source in self.inputs.values():  # nothing of the previous session's input is left
                source.reset(self.config.flush_timeout)
                source.begin_session(session.context)
            for sound in self.audio_outputs.values():
                sound.claim(session)
                sound.begin_session(session.context)
            self._session = session
            self._state = "starting"
            session._start()
            return session

    # Called by the session's threads to move the engine's state along with it.
    def _session_streaming(self, session: Session) -> None:
        with self._lock:
            if self._session is session and self._state == "starting":
                self._state = "streaming"

    def _session_stopping(self, session: Session) -> None:
        with self._lock:
            if self._session is session and self._state in ("starting", "streaming"):
                self._state = "stopping"

    def _session_unhealthy(self, session: Session, why: str) -> None:
        with self._lock:
            self._stuck = session
            if self._state != "closed":
                self._state = "unhealthy"
                self._reason = why

    def _session_ended(self, session: Session) -> None:
        with self._lock:
            if self._stuck is session:
                _log.warning(
                    "session %s returned after being marked unhealthy; engine ready", session.session_id
                )
                self._stuck = None
                self._reason = ""
            if self._state != "closed":
                self._state = "ready"
        if self.config.trim_heap:
            heap.trim()  # on the ended session's own thread, after the engine is ready for the next

    # -- introspection ---------------------------------------------------------------------------

    def asgi_app(self, **options: Any) -> Any:
        """This engine's ASGI app (the session hub and its transports) for a host to mount.

        Options are those of ``transports.app.HttpOptions``, plus ``transports=[...]``: route factories
        of further transports. The host awaits ``app.state.runtime.shutdown()`` before ``engine.close()``.
        """
        from reactor_engine.transports.app import asgi_app  # imported here: starlette only when asked

        return asgi_app(self, **options)

    def capabilities(self) -> dict[str, Any]:
        """The seed-era capabilities of the model (tracks, commands, emission fps)."""
        return self.model_class.capabilities()

    def command_schema(self) -> dict[str, Any]:
        """JSON Schema of every command's arguments, keyed by command name."""
        return self.model_class.command_schema()

    def stats(self) -> dict[str, Any]:
        """Core counters and latency histograms of each track since the engine started, by track name:
        outputs ``{"ring", "pinning"}``; inputs and audio outputs ``{"kind", "direction", "ring", ...}``
        (a video input adds ``decoders``: each decoder's counters and last error)."""
        stats: dict[str, Any] = {
            name: {"ring": track.ring.stats(), "pinning": track.ring.pinning}
            for name, track in self.tracks.items()
        }
        for name, media in {**self.inputs, **self.audio_outputs}.items():
            stats[name] = media.stats()
        return stats

    # -- shutdown --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the running session (reason ``shutdown``, bounded by ``stop_grace``) and free the core."""
        if self._load_thread is not None:
            self._loaded.wait(self.config.stop_grace)
        session = self._session
        if session is not None:
            if not session.ended:
                session.stop("shutdown")
            session._join(self.config.stop_grace)
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        self._close_core()

    def _close_core(self) -> None:
        for media in (*self.inputs.values(), *self.audio_outputs.values()):
            media.close()  # decoders first, then their ring
        for encoder in self._encoders:
            encoder.close()
        for ring in self._rings:
            ring.close()
        self._encoders.clear()
        self._rings.clear()

    def __enter__(self) -> Engine:
        if self._load_thread is not None:
            self.wait_ready()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, state={self._state!r})"
