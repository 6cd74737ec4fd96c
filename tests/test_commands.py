"""@command: strict argument validation, schemas, the per-class registry and the session queue."""

from __future__ import annotations

import threading
from typing import Literal

import pytest
from pydantic import Field

from reactor_engine import CommandError, ModelError, VideoModel, command, model
from reactor_engine.commands import CommandQueue, collect_commands


@model(name="command-model")
class CommandModel(VideoModel):
    def __init__(self, config=None):
        self.calls = []

    @command("set_prompt", description="Change the prompt")
    def set_prompt(self, prompt: str):
        self.calls.append(("set_prompt", prompt))
        return {"prompt": prompt}

    @command("set_speed")
    def set_speed(self, speed: float = Field(1.0, ge=0.0, le=5.0, description="Playback speed")):
        self.calls.append(("set_speed", speed))

    @command("set_steps")
    def set_steps(self, steps: int, enabled: bool = True):
        self.calls.append(("set_steps", steps, enabled))

    @command("move")
    def move(self, direction: Literal["up", "down", "none"] = "none", seed: int | None = None):
        self.calls.append(("move", direction, seed))

    @command("explode")
    def explode(self):
        raise RuntimeError("secret path /home/me/weights.bin")

    @command("refuse")
    def refuse(self):
        raise CommandError("prompt is on the block list")

    def start_session(self):
        pass


SPECS = collect_commands(CommandModel)


def test_valid_arguments_are_returned_typed():
    assert SPECS["set_speed"].validate({"speed": 2}) == {"speed": 2.0}
    assert SPECS["set_steps"].validate({"steps": 4}) == {"steps": 4, "enabled": True}
    assert SPECS["move"].validate({"direction": "up", "seed": None}) == {"direction": "up", "seed": None}


@pytest.mark.parametrize(
    ("name", "data", "detail"),
    [
        ("set_steps", {"steps": "7"}, "'steps'"),
        ("set_steps", {"steps": True}, "'steps'"),
        ("set_steps", {"steps": 2.5}, "'steps'"),
        ("set_steps", {"steps": 1, "enabled": "yes"}, "'enabled'"),
        ("set_speed", {"speed": "2.5"}, "'speed'"),
        ("set_speed", {"speed": 9.0}, "less than or equal to 5"),
        ("move", {"direction": "left"}, "'up', 'down' or 'none'"),
        ("set_prompt", {}, "'prompt' is required"),
        ("set_prompt", {"prompt": "x", "promt": "y"}, "'promt' is not a parameter"),
    ],
)
def test_invalid_arguments_raise_command_error_with_the_detail(name, data, detail):
    with pytest.raises(CommandError, match=f"invalid arguments for command '{name}'") as info:
        SPECS[name].validate(data)
    assert detail in str(info.value)
    assert isinstance(info.value, ValueError)


def test_arguments_must_be_an_object():
    with pytest.raises(CommandError, match="takes an object of arguments; got list"):
        SPECS["set_prompt"].validate(["x"])


def test_seed_schema_matches_the_seed_era_shape():
    assert SPECS["set_prompt"].seed_schema() == {"prompt": {"type": "string", "required": True}}
    assert SPECS["set_speed"].seed_schema() == {
        "speed": {
            "default": 1.0,
            "description": "Playback speed",
            "minimum": 0.0,
            "maximum": 5.0,
            "type": "number",
        }
    }
    assert SPECS["move"].seed_schema()["direction"] == {
        "default": "none",
        "enum": ["up", "down", "none"],
        "type": "string",
    }


def test_json_schema_rejects_extra_properties_and_names_the_command():
    schema = SPECS["set_prompt"].json_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]
    assert schema["title"] == "set_prompt"
    assert schema["description"] == "Change the prompt"


def test_capabilities_have_the_seed_era_shape():
    caps = CommandModel.capabilities()
    assert caps["protocol_version"] == "1.0"
    assert caps["tracks"] == [{"name": "main_video", "kind": "video", "direction": "recvonly"}]
    assert {
        "name": "set_prompt",
        "description": "Change the prompt",
        "schema": {"prompt": {"type": "string", "required": True}},
    } in caps["commands"]
    assert caps["emission_fps"] is None


def test_commands_belong_to_their_model_class_only():
    @model(name="other-model")
    class Other(VideoModel):
        @command("set_prompt")
        def other_prompt(self, text: str):
            pass

        def start_session(self):
            pass

    assert set(collect_commands(Other)) == {"set_prompt"}
    assert collect_commands(Other)["set_prompt"].seed_schema() == {
        "text": {"type": "string", "required": True}
    }
    assert SPECS["set_prompt"].seed_schema() == {"prompt": {"type": "string", "required": True}}


def test_subclass_inherits_and_overrides_commands():
    class Child(CommandModel):
        @command("set_prompt")
        def set_prompt_v2(self, prompt: str, strength: float = 1.0):
            pass

    specs = collect_commands(Child)
    assert "set_speed" in specs
    assert "strength" in specs["set_prompt"].seed_schema()


def test_a_class_declaring_a_command_twice_is_rejected():
    class Twice(VideoModel):
        @command("go")
        def a(self):
            pass

        @command("go")
        def b(self):
            pass

        def start_session(self):
            pass

    with pytest.raises(ModelError, match="declares command 'go' twice"):
        model(name="twice")(Twice)


@pytest.mark.parametrize("bad", ["", "has space", "9lives", "requestCapabilities"])
def test_bad_command_names_fail_at_decoration(bad):
    with pytest.raises(ModelError, match="command name"):
        command(bad)


def test_a_parameter_without_type_hint_fails_at_decoration():
    with pytest.raises(ModelError, match="parameter 'value' needs a type hint"):

        @command("untyped")
        def untyped(self, value):
            pass


def _queue():
    woken = threading.Event()
    return CommandQueue(SPECS, wake=woken.set), woken


def test_queued_command_runs_only_when_applied_and_returns_its_value():
    queue, woken = _queue()
    instance = CommandModel()
    reply = queue.submit("set_prompt", {"prompt": "a rainy night"})
    assert woken.is_set()
    assert instance.calls == []
    assert not reply.done()
    assert queue.apply_pending(instance) == 1
    assert instance.calls == [("set_prompt", "a rainy night")]
    assert reply.result(0) == {"prompt": "a rainy night"}


def test_unknown_command_lists_the_known_ones():
    queue, _ = _queue()
    with pytest.raises(CommandError, match="unknown command 'fly'; this model takes: explode, move, "):
        queue.submit("fly", {})


def test_handler_exception_text_is_not_leaked_to_the_sender():
    queue, _ = _queue()
    reply = queue.submit("explode", None)
    queue.apply_pending(CommandModel())
    with pytest.raises(CommandError) as info:
        reply.result(0)
    assert str(info.value) == "command 'explode' failed: internal error (RuntimeError)"
    assert "secret" not in str(info.value)


def test_command_error_raised_by_a_handler_reaches_the_sender():
    queue, _ = _queue()
    reply = queue.submit("refuse", {})
    queue.apply_pending(CommandModel())
    with pytest.raises(CommandError, match="command 'refuse' failed: prompt is on the block list"):
        reply.result(0)


def test_closing_the_queue_fails_pending_commands_and_refuses_new_ones():
    queue, _ = _queue()
    reply = queue.submit("set_steps", {"steps": 1})
    queue.close("session s1 ended (stopped)")
    with pytest.raises(CommandError, match=r"not applied: session s1 ended \(stopped\)"):
        reply.result(0)
    with pytest.raises(CommandError, match="the session has ended"):
        queue.submit("set_steps", {"steps": 1})


def test_seed_era_send_dispatches_directly():
    instance = CommandModel()
    assert instance.send("set_prompt", {"prompt": "x"}) == {"prompt": "x"}
    with pytest.raises(ValueError, match="Unknown command: nope"):
        instance.send("nope")


def test_a_huge_bad_value_is_echoed_back_truncated():
    with pytest.raises(CommandError) as info:
        SPECS["set_steps"].validate({"steps": "x" * 50_000})
    message = str(info.value)
    assert "(50002 characters)" in message
    assert len(message) < 300
