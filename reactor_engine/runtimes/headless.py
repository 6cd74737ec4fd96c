"""The headless runtime: sessions recorded to files (JPEG sequence, MJPEG or raw RGB24) plus stats JSON.

Two modes. Batch: one session, ended after ``frames`` frames or ``seconds`` s (or when the model
returns), with commands from a JSONL script applied at given frames or times. Interactive (neither
limit given): ``start``, ``stop``, ``cmd NAME JSON``, ``help`` and ``quit`` lines on stdin.

Threads: a ``Recorder`` thread per session reads packets and writes files; the calling thread runs
the script or the prompt. SIGINT and SIGTERM stop the session and write its stats before exiting.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from reactor_engine.errors import CommandError, ConfigError, ReactorError, ReactorTimeoutError

if TYPE_CHECKING:
    from reactor_engine.engine import Engine
    from reactor_engine.session import Session

__all__ = [
    "FORMATS",
    "HeadlessOptions",
    "Recorder",
    "ScriptedCommand",
    "check_options",
    "check_output",
    "load_script",
    "run_headless",
]

_log = logging.getLogger("reactor_engine.headless")

OutputFormat = Literal["jpeg", "mjpeg", "raw"]
FORMATS: dict[str, str] = {"jpeg": "jpeg", "mjpeg": "jpeg", "raw": "raw"}  # output format -> engine codec
_MAX_KEPT_MESSAGES = 1000
_END_MARGIN_S = 3.0  # beyond the stop grace: the last frames' encode and the stats
_HELP = """commands:
  start              start a session (frames go to a new folder under the output folder)
  stop               stop the session and write its stats
  cmd NAME JSON      send a command, e.g. cmd set_prompt {"prompt": "a rainy night"}
  help               this text
  quit               stop and exit (also Ctrl-D)"""


@dataclass(frozen=True)
class HeadlessOptions:
    """``output``: folder for frames and ``stats.json``. ``frames`` / ``seconds``: end the session there
    (batch mode); with neither, sessions are driven from stdin. ``commands``: a JSONL script. ``input``:
    a folder of images fed to the model's ``VideoIn`` at ``input_fps`` (``headless_input.py``); the
    session ends with the input (batch mode)."""

    output: Path
    frames: int | None = None
    seconds: float | None = None
    commands: Path | None = None
    format: OutputFormat = "jpeg"
    input: Path | None = None
    input_fps: float | None = None  # None: the VideoIn's rate, else 30

    @property
    def interactive(self) -> bool:
        return self.frames is None and self.seconds is None and self.input is None


@dataclass(frozen=True)
class ScriptedCommand:
    """One line of a commands script: ``{"type": NAME, "data": {...}, "at_frame": N | "at_s": S}``."""

    line: int
    name: str
    data: Mapping[str, Any]
    at_frame: int | None = None
    at_s: float | None = None

    def due(self, frames: int, elapsed_s: float) -> bool:
        if self.at_frame is not None:
            return frames >= self.at_frame
        if self.at_s is not None:
            return elapsed_s >= self.at_s
        return True


def load_script(path: Path) -> list[ScriptedCommand]:
    """Parse a JSONL commands script; ``ConfigError`` naming the line and what it expected."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the commands script {path}: {exc}") from exc
    script: list[ScriptedCommand] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON ({exc})") from None
        expected = '{"type": NAME, "data": {...}, "at_frame": N} or "at_s": SECONDS'
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ConfigError(f"{where}: expected {expected}")
        unknown = set(entry) - {"type", "data", "at_frame", "at_s"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected {expected}")
        data = entry.get("data", {})
        at_frame, at_s = entry.get("at_frame"), entry.get("at_s")
        if not isinstance(data, dict):
            raise ConfigError(f'{where}: "data" must be an object; got {data!r}')
        if at_frame is not None and (
            not isinstance(at_frame, int) or isinstance(at_frame, bool) or at_frame < 0
        ):
            raise ConfigError(f'{where}: "at_frame" must be an int >= 0; got {at_frame!r}')
        if at_s is not None and (not isinstance(at_s, (int, float)) or isinstance(at_s, bool) or at_s < 0):
            raise ConfigError(f'{where}: "at_s" must be a number >= 0; got {at_s!r}')
        if at_frame is not None and at_s is not None:
            raise ConfigError(f'{where}: give "at_frame" or "at_s", not both')
        script.append(
            ScriptedCommand(number, entry["type"], data, at_frame, None if at_s is None else float(at_s))
        )
    return script


@dataclass
class _CommandRecord:
    command: ScriptedCommand | None
    name: str
    sent_at_frame: int
    future: Future[Any] | None = None
    error: str | None = None

    def outcome(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.name, "sent_at_frame": self.sent_at_frame}
        if self.command is not None:
            out["line"] = self.command.line
        error = self.error
        if error is None and self.future is not None:
            if not self.future.done():
                error = "not applied before the session ended"
            elif (exc := self.future.exception()) is not None:
                error = str(exc)
            else:
                out["result"] = self.future.result()
        out["ok"] = error is None
        if error is not None:
            out["error"] = error
        return out


@dataclass
class _Output:
    frames_written: int = 0
    bytes_written: int = 0
    first_frame_index: int | None = None
    last_frame_index: int | None = None
    width: int = 0
    height: int = 0
    files: list[str] = field(default_factory=list)


class Recorder:
    """Writes one session's frames into ``folder`` on its own thread; ``finish()`` writes ``stats.json``.

    Stops the session itself once ``max_frames`` frames are written or ``max_seconds`` have passed.
    Never waits without a bound: a model that ignores ``should_stop()`` leaves the session
    ``unhealthy`` after the engine's stop grace, and the recording ends then (``end_timeout`` bounds
    ``finish``'s wait for the session thread).
    """

    def __init__(
        self,
        session: Session,
        folder: Path,
        fmt: OutputFormat,
        *,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        script: list[ScriptedCommand] | None = None,
        on_message: Any = None,
        end_timeout: float = 10.0,
    ) -> None:
        self.session = session
        self._end_timeout = end_timeout
        self.folder = folder
        self.format = fmt
        self._max_frames = max_frames
        self._max_seconds = max_seconds
        self._script = list(script or [])
        self._commands: list[_CommandRecord] = []
        self._messages: list[dict[str, Any]] = []
        self._on_message = on_message
        self._output = _Output()
        self._started = time.monotonic()
        self._stream: IO[bytes] | None = None
        self._error: str | None = None
        self.done = threading.Event()
        folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"reactor-recorder-{session.session_id[:8]}")
        self._thread.start()

    @property
    def frames_written(self) -> int:
        return self._output.frames_written

    def send(
        self, name: str, data: Mapping[str, Any] | None, command: ScriptedCommand | None = None
    ) -> Future[Any]:
        """Queue a command (validated now: ``CommandError`` at once for a bad one); recorded in the stats."""
        record = _CommandRecord(command, name, self._output.frames_written)
        self._commands.append(record)
        try:
            record.future = self.session.submit_command(name, data)
        except CommandError as exc:
            record.error = str(exc)
            raise
        return record.future

    def _run(self) -> None:
        try:
            self._apply_script()
            while True:
                try:
                    packet = self.session.next_packet(timeout=0.1)
                except ReactorTimeoutError:
                    packet = None
                    if self._limit_reached() or self.session.state == "unhealthy":
                        break
                    self._drain_messages()
                    self._apply_script()
                    continue
                if packet is None:  # the session ended and its last frame is out
                    break
                with packet:
                    if not self._limit_reached():
                        self._write(packet)
                self._drain_messages()
                self._apply_script()
                if self._limit_reached():
                    break
        except ReactorError as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            _log.error("recording stopped: %s", self._error, extra={"session_id": self.session.session_id})
        finally:
            if self._stream is not None:
                self._stream.close()
            if not self.session.ended and self.session.state != "unhealthy":
                self.session.stop("stopped")  # bounded: escalates to unhealthy after the stop grace
            self._drain_messages()
            self.done.set()

    def _limit_reached(self) -> bool:
        if self._max_frames is not None and self._output.frames_written >= self._max_frames:
            return True
        return self._max_seconds is not None and time.monotonic() - self._started >= self._max_seconds

    def _apply_script(self) -> None:
        elapsed = time.monotonic() - self._started
        while self._script and self._script[0].due(self._output.frames_written, elapsed):
            command = self._script.pop(0)
            try:
                self.send(command.name, command.data, command)
            except CommandError as exc:
                _log.warning(
                    "script line %d: %s", command.line, exc, extra={"session_id": self.session.session_id}
                )

    def _drain_messages(self) -> None:
        for message in self.session.messages(timeout=0):
            if len(self._messages) < _MAX_KEPT_MESSAGES:
                self._messages.append(message)
            if self._on_message is not None:
                self._on_message(message)

    def _write(self, packet: Any) -> None:
        out = self._output
        data = memoryview(packet)
        if self.format == "jpeg":
            name = f"frame_{out.frames_written:06d}.jpg"
            (self.folder / name).write_bytes(data)
            if len(out.files) < 2:
                out.files.append(name)
            else:
                out.files[1] = name
        else:
            if self._stream is None:
                name = "stream.mjpeg" if self.format == "mjpeg" else "frames.rgb24"
                self._stream = (self.folder / name).open("wb")
                out.files.append(name)
            self._stream.write(data)
        if out.first_frame_index is None:
            out.first_frame_index = packet.frame_index
        out.last_frame_index = packet.frame_index
        out.width, out.height = packet.width, packet.height
        out.frames_written += 1
        out.bytes_written += len(data)

    def finish(self, timeout: float | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Wait for the recording to end (at most ``timeout``, default ``end_timeout``), write
        ``stats.json`` (with ``extra`` sections) and return what it holds. A hung model is reported."""
        deadline = time.monotonic() + (self._end_timeout if timeout is None else timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self.session.wait(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive() and self._error is None:
            self._error = "the recording did not end in time (the model ignores should_stop())"
        out = self._output
        stats = {
            "session": self.session.stats(),
            "output": {
                "folder": str(self.folder),
                "format": self.format,
                "frames_written": out.frames_written,
                "bytes_written": out.bytes_written,
                "first_frame_index": out.first_frame_index,
                "last_frame_index": out.last_frame_index,
                "width": out.width,
                "height": out.height,
                "files": out.files,
            },
            "commands": [record.outcome() for record in self._commands],
            "messages": self._messages,
            "error": self._error,
            "healthy": self.session.state != "unhealthy",
            **(extra or {}),
        }
        (self.folder / "stats.json").write_text(
            json.dumps(stats, indent=2, default=str) + "\n", encoding="utf-8"
        )
        return stats


def run_headless(engine: Engine, options: HeadlessOptions, stdin: IO[str], stdout: IO[str]) -> int:
    """Run the headless runtime on a loaded engine; returns the process exit code."""
    codec = FORMATS[options.format]
    if engine.config.codec != codec:
        raise ConfigError(
            f"--format {options.format} needs the engine codec {codec!r}; got {engine.config.codec!r} "
            f"(drop --engine.codec or pass --engine.codec={codec})"
        )
    check_output(options.output)
    script = load_script(options.commands) if options.commands is not None else []
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        if options.interactive:
            return _interactive(engine, options, stdin, stdout)
        return _batch(engine, options, script, stdout)
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_options(options: HeadlessOptions) -> None:
    """What can be checked before the model loads: the output folder, the script, the input folder."""
    check_output(options.output)
    if options.commands is not None:
        load_script(options.commands)
    if options.input is not None:
        from reactor_engine.runtimes.headless_input import list_input

        list_input(options.input)


def check_output(output: Path) -> None:
    """``--output`` must be a new or empty folder: old frames are never mixed with new ones."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; give a folder (new or empty)")
    if output.is_dir() and any(output.iterdir()):
        raise ConfigError(
            f"--output {output} is not empty; give a new or empty folder (old frames would mix with new)"
        )


def _batch(engine: Engine, options: HeadlessOptions, script: list[ScriptedCommand], stdout: IO[str]) -> int:
    from reactor_engine.runtimes.headless_input import DEFAULT_FPS, InputFeeder, input_track, list_input

    files = list_input(options.input) if options.input is not None else []
    track = input_track(engine) if files else None
    options.output.mkdir(parents=True, exist_ok=True)
    session = engine.session()
    recorder = Recorder(
        session, options.output, options.format,
        max_frames=options.frames, max_seconds=options.seconds, script=script,
        end_timeout=engine.config.stop_grace + _END_MARGIN_S,
    )  # fmt: skip
    fps = options.input_fps or (track.rate if track is not None and track.rate > 0 else DEFAULT_FPS)
    feeder = InputFeeder(session, track, files, fps) if track is not None else None
    try:
        while not recorder.done.wait(0.2):
            pass
    except KeyboardInterrupt:
        _log.info("interrupted: stopping the session", extra={"session_id": session.session_id})
        session.stop("shutdown")
    stats = recorder.finish(extra={"input": feeder.close()} if feeder is not None else None)
    _print_summary(stats, stdout)
    return 1 if stats["error"] or stats["session"]["error"] or not stats["healthy"] else 0


def _print_summary(stats: Mapping[str, Any], stdout: IO[str]) -> None:
    out, session = stats["output"], stats["session"]
    failed = sum(1 for c in stats["commands"] if not c["ok"])
    stdout.write(
        f"[STATS] {out['frames_written']} frames ({out['format']}) in {out['folder']}, "
        f"{session['fps']:.1f} fps, {session['drops']} dropped, ended: {session['end_reason']}"
        f"{'' if stats['healthy'] else ' (unhealthy: the model ignored should_stop())'}, "
        f"{len(stats['commands'])} commands ({failed} failed); stats.json written\n"
    )
    stdout.flush()


def _interactive(engine: Engine, options: HeadlessOptions, stdin: IO[str], stdout: IO[str]) -> int:
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            stdout.write(text + "\n")
            stdout.flush()

    def on_message(message: Mapping[str, Any]) -> None:
        say(f"[MESSAGE] {json.dumps(message, default=str)}")

    recorder: Recorder | None = None
    count = 0

    def stop() -> None:
        nonlocal recorder
        if recorder is None:
            say("[ERROR] no session is running")
            return
        recorder.session.stop("stopped")
        stats = recorder.finish()
        with lock:
            _print_summary(stats, stdout)
        recorder = None

    say(f"model '{engine.name}' ready. {_HELP}")
    try:
        for raw in stdin:
            line = raw.strip()
            if recorder is not None and recorder.done.is_set():  # the model returned, or max duration
                stop()
            if not line:
                continue
            verb, _, rest = line.partition(" ")
            if verb == "quit":
                break
            if verb == "help":
                say(_HELP)
            elif verb == "start":
                if recorder is not None:
                    say(f"[ERROR] session {recorder.session.session_id} is running; stop it first")
                    continue
                count += 1
                session = engine.session()
                folder = options.output / f"session-{count:03d}-{session.session_id[:8]}"
                recorder = Recorder(
                    session, folder, options.format, on_message=on_message,
                    end_timeout=engine.config.stop_grace + _END_MARGIN_S,
                )  # fmt: skip
                say(f"[STARTED] session {session.session_id}, frames to {folder}")
            elif verb == "stop":
                stop()
            elif verb == "cmd":
                _interactive_command(recorder, rest, say)
            else:
                say(f"[ERROR] unknown input {verb!r}; type help")
    except KeyboardInterrupt:
        say("[INTERRUPTED]")
    if recorder is not None:
        stop()
    return 0


def _interactive_command(recorder: Recorder | None, rest: str, say: Any) -> None:
    if recorder is None:
        say("[ERROR] no session is running; type start first")
        return
    name, _, text = rest.strip().partition(" ")
    if not name:
        say('[ERROR] usage: cmd NAME JSON, e.g. cmd set_prompt {"prompt": "a rainy night"}')
        return
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        say(f"[ERROR] the arguments of {name} are not JSON: {exc}")
        return
    try:
        result = recorder.send(name, data).result(10.0)
    except (CommandError, TimeoutError) as exc:
        say(f"[ERROR] {exc or type(exc).__name__}")
        return
    say(f"[REPLY] {name}: {json.dumps(result, default=str)}")
