"""``@command``: model commands, their strict pydantic validation, JSON Schema and the per-session queue.

A command is declared on a model method. Its parameters become a pydantic model at decoration time
(strict: no ``"yes"`` → ``True``, no ``True`` → ``1``; unknown keys rejected). Commands belong to their
model class: ``@model`` collects them from the class and its bases, so no process-global registry
exists and a helper module cannot leak commands into another model's capabilities.

Threads: ``validate`` runs on the caller's thread (the host, a web loop), so a bad request fails there
at once; the handler itself runs only on the session thread, when the model reaches a poll point
(``should_stop()``, ``emit``, ``ctx.wait()``) and ``CommandQueue.apply_pending`` drains the queue.

Current values: ``@command(..., state=lambda self: {"speed": self.speed})`` declares how to read the
value each parameter has now. The queue reads them on the session thread (at the session's first poll
point, after every command, and at most twice a second in between) and hands each changed snapshot to
its watchers (the session hub, which tells the clients); a parameter no ``state=`` names has no
current value the engine can know.
"""

from __future__ import annotations

import inspect
import json
import logging
import queue
import re
import threading
import time
import typing
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from pydantic import ConfigDict, ValidationError

from reactor_engine.errors import CommandError, ModelError

__all__ = [
    "CommandQueue",
    "CommandSpec",
    "CommandState",
    "StateReader",
    "collect_commands",
    "command",
    "command_state",
]

_log = logging.getLogger("reactor_engine.commands")

_COMMAND_ATTR = "__reactor_command__"
_NAME_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
# Names the runtimes answer themselves (seed-era control messages); a model may not take them.
RESERVED_NAMES = frozenset({"requestCapabilities", "ping"})

F = TypeVar("F", bound=Callable[..., Any])

StateReader = Callable[[Any], Mapping[str, Any]]
"""``@command(state=...)``: called with the model instance, returns ``{PARAMETER: current value}``."""
CommandState = dict[str, dict[str, Any]]
"""The current values the engine knows: ``{COMMAND: {PARAMETER: value}}``; a parameter left out has none."""

_STATE_REFRESH_S = 0.5  # between commands the current values are read again this often (a model may
# change them itself); reading them is a few attribute reads, so twice a second costs nothing
_warned: set[tuple[str, str]] = set()  # (handler, problem) already logged: a bad reader logs once


@dataclass(frozen=True)
class CommandSpec:
    """One command of a model class: its name, handler and the pydantic model of its arguments."""

    name: str
    description: str
    handler: Callable[..., Any]
    arguments: type[pydantic.BaseModel]
    state: StateReader | None = None

    def current(self, model: object) -> dict[str, Any] | None:
        """The current value of each parameter ``state=`` names, as JSON values; ``None`` without a
        ``state=`` or when it fails (logged once, with what was wrong)."""
        if self.state is None:
            return None
        try:
            values = self.state(model)
        except Exception:
            _warn_once(self, "raised", exc_info=True)
            return None
        if not isinstance(values, Mapping):
            _warn_once(self, f"returned {type(values).__name__}, not a dict of parameter values")
            return None
        known = self.arguments.model_fields
        current: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                params = ", ".join(known) or "none"
                _warn_once(self, f"names {key!r}, which is not a parameter ({params})")
                continue
            try:
                current[key] = _json_value(value)
            except (TypeError, ValueError):
                _warn_once(self, f"gave {key!r} a {type(value).__name__}, which is not a JSON value")
        return current

    def validate(self, data: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check ``data`` strictly against the parameters; raise ``CommandError`` naming each problem."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise CommandError(
                f"command '{self.name}' takes an object of arguments; got {type(data).__name__}"
            )
        try:
            parsed = self.arguments.model_validate(dict(data))
        except ValidationError as exc:
            raise CommandError(f"invalid arguments for command '{self.name}': {_describe(exc)}") from None
        return {key: getattr(parsed, key) for key in type(parsed).model_fields}

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments object (``additionalProperties: false``)."""
        schema = self.arguments.model_json_schema()
        schema["title"] = self.name
        if self.description:
            schema["description"] = self.description
        return schema

    def seed_schema(self) -> dict[str, Any]:
        """The seed-era (1.x) simplified schema: each property without ``title``, plus ``required``."""
        schema = self.arguments.model_json_schema()
        required = set(schema.get("required", []))
        simplified: dict[str, Any] = {}
        for key, prop in schema.get("properties", {}).items():
            entry = {k: v for k, v in prop.items() if k != "title"}
            if key in required:
                entry["required"] = True
            simplified[key] = entry
        return simplified

    def describe(self) -> dict[str, Any]:
        """The 1.7.5 ``commands()`` entry: ``{"name", "description", "schema"}``."""
        return {"name": self.name, "description": self.description, "schema": self.seed_schema()}


_SHOWN_INPUT_CHARS = 80  # an error echoes at most this much of a bad value back to the sender


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's digit limit, a value nested too deep
        return f"a {type(value).__name__} too large to show"
    if len(text) <= _SHOWN_INPUT_CHARS:
        return text
    return f"{text[:_SHOWN_INPUT_CHARS]}... ({len(text)} characters)"


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(arguments)"
        got = error.get("input")
        if error["type"] == "missing":
            parts.append(f"'{where}' is required")
        elif error["type"] == "extra_forbidden":
            parts.append(f"'{where}' is not a parameter")
        else:
            parts.append(f"'{where}': {error['msg']} (got {_shown(got)})")
    return "; ".join(parts)


def command(name: str, description: str = "", *, state: StateReader | None = None) -> Callable[[F], F]:
    """Declare a model method as a command clients can send, e.g. ``@command("set_prompt")``.

    Parameters come from the method's type hints (``str, int, float, bool, Literal[...]``,
    ``Optional[...]``, defaults, ``pydantic.Field(ge=, le=, description=)``). A parameter without a
    default is required. Raises ``TypeError`` here, at decoration, for a bad name or a parameter
    without a type hint.

    ``state``: how to read each parameter's current value from the model, e.g.
    ``@command("set_speed", state=lambda self: {"speed": self.speed})``. The engine reports these
    values (the viewer shows them as the controls' values); a parameter it leaves out, or a command
    without ``state=``, has no current value, and a parameter's default is never shown as one. It runs
    on the session thread between frames (and on the server's thread while no session runs): read
    attributes, nothing slow.
    """
    if not isinstance(name, str) or not _NAME_RULE.match(name):
        raise ModelError(
            f"command name {name!r} is not valid; use letters, digits, '_' or '-', starting with a letter"
        )
    if name in RESERVED_NAMES:
        raise ModelError(f"command name {name!r} is reserved for the runtime; choose another name")
    if not isinstance(description, str):
        raise ModelError(f"command description must be a str; got {type(description).__name__}")
    if state is not None and not callable(state):
        raise ModelError(
            f"@command({name!r}, state=...) takes a function of the model, e.g. "
            f"state=lambda self: {{'speed': self.speed}}; got {type(state).__name__}"
        )

    def decorate(func: F) -> F:
        if not callable(func) or isinstance(func, (staticmethod, classmethod)):
            raise ModelError(f"@command({name!r}) decorates a plain method; got {func!r}")
        arguments = _arguments_model(name, func)
        setattr(func, _COMMAND_ATTR, CommandSpec(name, description, func, arguments, state))
        return func

    return decorate


def _arguments_model(name: str, func: Callable[..., Any]) -> type[pydantic.BaseModel]:
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # a hint naming something that cannot be resolved
        raise ModelError(
            f"command {name!r}: cannot resolve the type hints of {func.__qualname__}: {exc}"
        ) from exc
    fields: dict[str, Any] = {}
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ModelError(f"command {name!r}: *args / **kwargs are not supported ({param})")
        if param.name not in hints:
            raise ModelError(
                f"command {name!r}: parameter '{param.name}' needs a type hint "
                f"(str, int, float, bool, Literal)"
            )
        # A pydantic ``Field(...)`` default carries its own constraints and is passed through as-is.
        default: Any = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model_name = "".join(part.title() for part in re.split(r"[_\-]", name)) + "Command"
    try:
        return pydantic.create_model(
            model_name,
            __config__=ConfigDict(strict=True, extra="forbid", validate_default=True),
            **fields,
        )
    except (pydantic.PydanticSchemaGenerationError, TypeError, ValidationError) as exc:
        raise ModelError(f"command {name!r}: unsupported parameters: {exc}") from exc


def collect_commands(cls: type) -> dict[str, CommandSpec]:
    """The commands of a model class and its bases; a subclass's method overrides its base's."""
    found: dict[str, CommandSpec] = {}
    for klass in reversed(cls.__mro__):
        local: dict[str, str] = {}
        for attr, value in vars(klass).items():
            spec = getattr(value, _COMMAND_ATTR, None)
            if not isinstance(spec, CommandSpec):
                continue
            if spec.name in local:
                raise ModelError(
                    f"{klass.__qualname__} declares command {spec.name!r} twice "
                    f"(methods '{local[spec.name]}' and '{attr}')"
                )
            local[spec.name] = attr
            found[spec.name] = spec
    return found


def command_state(commands: Mapping[str, CommandSpec], model: object) -> CommandState:
    """The current values of every command that declares ``state=``: ``{COMMAND: {PARAMETER: value}}``."""
    found: CommandState = {}
    for name, spec in commands.items():
        current = spec.current(model)
        if current is not None:
            found[name] = current
    return found


def _json_value(value: Any) -> Any:
    """``value`` as JSON would carry it; a numpy or torch scalar becomes its Python number."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        item = getattr(value, "item", None)
        if item is None:
            raise
        return json.loads(json.dumps(item()))


def _warn_once(spec: CommandSpec, problem: str, exc_info: bool = False) -> None:
    key = (f"{spec.handler.__module__}.{spec.handler.__qualname__}", problem)
    if key not in _warned:
        _warned.add(key)
        _log.warning(
            "the state= of command %r %s; its current values are not reported", spec.name, problem,
            exc_info=exc_info,
        )  # fmt: skip


@dataclass
class _PendingCommand:
    spec: CommandSpec
    arguments: dict[str, Any]
    reply: Future[Any]


class CommandQueue:
    """The commands of one session, queued by any thread and applied on the session thread.

    Created per session, so nothing sent in one session reaches the next; ``close()`` fails what is
    left with a ``CommandError`` instead of dropping it silently. It also reads the commands' current
    values (``state``, ``watch_state``) on the session thread.
    """

    def __init__(self, commands: Mapping[str, CommandSpec], wake: Callable[[], None]) -> None:
        self._commands = commands
        self._queue: queue.SimpleQueue[_PendingCommand] = queue.SimpleQueue()
        self._wake = wake
        self._lock = threading.Lock()  # orders submit against close, so no command is left unanswered
        self._closed = False
        self._stateful = any(spec.state is not None for spec in commands.values())
        self._state: CommandState | None = None
        self._state_read_at = 0.0
        self._watchers: list[Callable[[CommandState], None]] = []
        # idle(): apply_pending has nothing to do. Without values to refresh it is the queue's own
        # empty() (C), so the poll point inside every emit runs no Python frame for commands.
        self.idle: Callable[[], bool] = self._idle_stateful if self._stateful else self._queue.empty

    def quiet_ns(self) -> int:
        """Right after ``apply_pending``: ns until a poll point has work again without a ``submit``
        (-1: never; with command state, until its values are due to be read again)."""
        if not self._stateful:
            return -1
        if self._state is None:
            return 0
        return max(0, int((_STATE_REFRESH_S - (time.monotonic() - self._state_read_at)) * 1e9))

    def _idle_stateful(self) -> bool:
        return self._queue.empty() and self.quiet_ns() > 0

    @property
    def state(self) -> CommandState | None:
        """The latest current values read (``None`` before the session's first poll point)."""
        return self._state

    def watch_state(self, watcher: Callable[[CommandState], None]) -> CommandState | None:
        """Call ``watcher(values)`` on the session thread each time the current values change (before
        the reply of the command that changed them is resolved); returns the values read so far."""
        with self._lock:
            self._watchers.append(watcher)
            return self._state

    def _read_state(self, model: object) -> None:
        self._state_read_at = time.monotonic()
        values = command_state(self._commands, model)
        with self._lock:
            if values == self._state:
                return
            self._state = values
            watchers = list(self._watchers)
        for watcher in watchers:
            try:
                watcher(values)
            except Exception:  # a watcher never breaks the model's poll point
                _log.exception("a command-state watcher failed")

    def submit(self, name: str, data: Mapping[str, Any] | None) -> Future[Any]:
        """Validate on the caller's thread and queue; the future holds the handler's return value."""
        spec = self._commands.get(name)
        if spec is None:
            known = ", ".join(sorted(self._commands)) or "none"
            raise CommandError(f"unknown command {name!r}; this model takes: {known}")
        arguments = spec.validate(data)
        reply: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise CommandError(f"command {name!r} not applied: the session has ended")
            self._queue.put(_PendingCommand(spec, arguments, reply))
        self._wake()
        return reply

    def apply_pending(self, model: object) -> int:
        """Run every queued handler on ``model``; called on the session thread only. Returns how many.

        Reads the current values first at the session's first call (what it starts with), after each
        handler (before its reply is resolved, so a client learns the values with the reply), and
        every ``_STATE_REFRESH_S`` in between."""
        applied = 0
        if self._stateful and (
            self._state is None or time.monotonic() - self._state_read_at >= _STATE_REFRESH_S
        ):
            self._read_state(model)
        # empty() first: at nearly every poll point nothing is queued, and get_nowait would then raise
        # (an exception object per emit). The session thread is the only consumer, so get_nowait
        # after a non-empty empty() cannot raise.
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.reply.set_running_or_notify_cancel():
                continue
            failure: CommandError | None = None
            result: Any = None
            try:
                result = pending.spec.handler(model, **pending.arguments)
            except CommandError as exc:  # raised on purpose by the author: its text is for the sender
                failure = CommandError(f"command '{pending.spec.name}' failed: {exc}")
            except Exception as exc:
                _log.exception("command %r raised", pending.spec.name)
                # The handler's own text may hold internals (paths, tensors); the sender gets the kind.
                failure = CommandError(
                    f"command '{pending.spec.name}' failed: internal error ({type(exc).__name__})"
                )
            if self._stateful:  # a failed handler may have changed some values too
                self._read_state(model)
            if failure is not None:
                pending.reply.set_exception(failure)
            else:
                pending.reply.set_result(result)
            applied += 1
        return applied

    def close(self, why: str) -> None:
        """Refuse new commands and fail the queued ones with ``why``."""
        with self._lock:
            self._closed = True
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                return
            if pending.reply.set_running_or_notify_cancel():
                pending.reply.set_exception(CommandError(f"command '{pending.spec.name}' not applied: {why}"))
