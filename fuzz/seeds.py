"""Writes the seed corpus of every target, ``fuzz/corpus/<target>/``: a handful of valid inputs each.

A seed is an input as ``TestOneInput`` reads it (its leading bytes choose the mode, the command, the
channel...), so this file is where that layout is spelled out. Rerun it after changing how a target
reads its input: ``.venv/bin/python fuzz/seeds.py``.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Sequence
from typing import Any

from _common import CORPUS


def index(options: Sequence[Any], value: Any) -> int:
    """The byte ``Bytes.pick(options)`` reads as ``value`` (lists of up to 256 options)."""
    assert len(options) <= 256
    return list(options).index(value)


def commands() -> dict[str, bytes]:
    from fuzz_commands import NAMES

    def seed(name: str, args: Any, queue: bool = False) -> bytes:
        # name, via_queue, wanted (non-zero: the same name), mode 0 (JSON text), the JSON
        return bytes([index(NAMES, name), int(queue), 1, 0]) + json.dumps(args).encode()

    return {
        "set_text": seed("set_text", {"text": "a cat on a skateboard"}),
        "configure": seed(
            "configure",
            {
                "prompt": "x",
                "steps": 8,
                "guidance": 3.5,
                "enabled": False,
                "style": "neon",
                "seed": 42,
                "ratio": None,
            },
        ),
        "set_speed_queued": seed("set_speed", {"speed": 2.5}, queue=True),
        "set_seed_queued": seed("set_seed", {"seed": 7, "label": None}, queue=True),
        "set_style": seed("set_style", {"style": "sketch"}),
        "set_flag": seed("set_flag", {"flag": True}),
        "set_level": seed("set_level", {"level": 10}),
        "reset_queued": seed("reset", None, queue=True),
    }


def config() -> dict[str, bytes]:
    from fuzz_config import ENGINE_KEYS, MODEL_KEYS, VALUES

    def argument(section: str, key: str, value: str) -> bytes:
        # kind (1: --model., 4: --engine.), key and value each as "from the vocabulary" (2) + its index
        keys = MODEL_KEYS if section == "model" else ENGINE_KEYS
        return bytes([1 if section == "model" else 4, 2, index(keys, key), 2, index(VALUES, value)])

    def seed(*args: tuple[str, str, str]) -> bytes:
        return bytes([0, len(args) - 1]) + b"".join(argument(*a) for a in args)  # mode 0: a command line

    return {
        "model_int": seed(("model", "fps", "1")),
        "model_new_nested": seed(("model", "new.deep.key", "{a: 1}"), ("model", "prompt", "'quoted'")),
        "engine_codec": seed(("engine", "codec", "vp8")),
        "engine_number": seed(("engine", "fps", "0.5"), ("engine", "quality", "1")),
        "engine_and_model": seed(("engine", "weights_dir", "null"), ("model", "size", "[1, 2]")),
        "mapping": bytes([3, 11, 2, 4, 6, 2, 0]) + b"width",  # the Python API's mapping form
    }


def ws() -> dict[str, bytes]:
    def seed(message: Any) -> bytes:
        text = message if isinstance(message, str) else json.dumps(message)
        return bytes([1, 0]) + text.encode()  # same origin; the rest is one text message

    return {
        "ping": seed({"type": "ping", "t": 12.5, "request_id": "p1"}),
        "command": seed({"type": "set_text", "data": {"text": "hello"}, "request_id": "r1"}),
        "configure": seed(
            {"type": "configure", "data": {"prompt": "x", "steps": 4, "seed": None}, "request_id": 7}
        ),
        "capabilities": seed({"type": "requestCapabilities"}),
        "scope": seed(
            {"scope": "application", "data": {"type": "set_count", "data": {"count": 3}}, "request_id": "s"}
        ),
        "refused": seed({"type": "refuse", "data": {"why": "nope"}}),
        "unknown": seed({"type": "no_such_command", "data": {}}),
    }


def weights() -> dict[str, bytes]:
    import torch
    from safetensors.torch import save

    def raw(header: dict[str, Any], data: bytes = b"") -> bytes:
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + data

    mixed = save(
        {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16),
         "n": torch.tensor(3, dtype=torch.int64), "e": torch.zeros(0, 2, dtype=torch.uint8)},
        metadata={"format": "pt"},
    )  # fmt: skip
    entry = {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}
    return {  # mode 0: the file's bytes as they are
        "mixed": bytes([0]) + mixed,
        "empty": bytes([0]) + raw({}),
        "metadata_only": bytes([0]) + raw({"__metadata__": {"format": "pt", "source": "seed"}}),
        "one_u8": bytes([0]) + raw({"a": entry}, b"xy"),
        "unaligned": bytes([0])
        + raw({"a": entry, "f": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, bytes(6)),
        # Mode 3: a header built field by field; mode 7: an index and two shards (bytes found by a
        # random search for inputs that load two tensors).
        "generated": bytes.fromhex("03f22665a60c12d289185d950ee8813609166f6b113d178d6c0fd3901f"),
        "sharded": bytes.fromhex(
            "0782a3eea6e04c784620a2f2d2e8b2276aed53519982d27f9e46dbdba44cc5ea691c43d50054ad31"
        ),
    }


def wire() -> dict[str, bytes]:
    from reactor_engine.transports.webrtc.proto import reactor_wire_v1_pb2 as pb
    from reactor_engine.transports.webrtc.wire_v1 import dict_to_struct

    def seed(message: dict[str, Any] | bytes, channel: str) -> bytes:
        # mode 1 (text) or 0 (bytes), channel, the default size limit (1), the sniffed codec (0)
        if isinstance(message, dict):
            return bytes([1, 0 if channel == "data" else 1, 1, 0]) + json.dumps(message).encode()
        return bytes([0, 0 if channel == "data" else 1, 1, 0]) + message

    command = pb.DataClientMessage(request_id="data_1", kind=pb.MESSAGE_KIND_REQUEST)
    command.command.type = "set_prompt"
    command.command.data.CopyFrom(
        dict_to_struct({"prompt": "a cat", "steps": 4, "scale": 1.5, "tags": ["a", None]})
    )
    command.command.uploads["image"].upload_id = "u1"
    ping = pb.ControlClientMessage(kind=pb.MESSAGE_KIND_NOTIFICATION)
    ping.ping.SetInParent()
    publish = pb.ControlClientMessage(request_id="ctrl_1", kind=pb.MESSAGE_KIND_REQUEST)
    publish.publish_track.name = "webcam"
    clip = pb.ControlClientMessage(request_id="ctrl_2", kind=pb.MESSAGE_KIND_REQUEST)
    clip.request_clip.duration_seconds = 10.0
    return {
        "v0_command": seed(
            {"scope": "application", "data": {"type": "set_prompt", "data": {"prompt": "x"}}}, "data"
        ),
        "v0_ping": seed({"scope": "runtime", "data": {"type": "ping"}}, "data"),
        "v0_schema": seed({"scope": "runtime", "data": {"type": "requestSchema"}}, "data"),
        "v0_clip": seed(
            {"scope": "runtime", "data": {"type": "requestClip", "data": {"duration_seconds": 5}}}, "data"
        ),
        "v0_upload": seed(
            {
                "scope": "runtime",
                "data": {
                    "type": "fileUploaded",
                    "data": {"upload_id": "u1", "name": "a.png", "mime_type": "image/png", "size": 10},
                },
            },
            "data",
        ),
        "v0_publish": seed(
            {"type": "request", "method": "publish_track", "request_id": "1", "data": {"name": "webcam"}},
            "control",
        ),
        "v0_pause": seed(
            {"type": "notification", "event": "pause_track", "data": {"name": "main"}}, "control"
        ),
        "v1_command": seed(command.SerializeToString(), "data"),
        "v1_ping": seed(ping.SerializeToString(), "control"),
        "v1_publish": seed(publish.SerializeToString(), "control"),
        "v1_clip": seed(clip.SerializeToString(), "control"),
    }


def main() -> None:
    for target, make in (
        ("commands", commands),
        ("config", config),
        ("ws", ws),
        ("weights", weights),
        ("wire", wire),
    ):
        folder = CORPUS / target
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, data in make().items():
            (folder / name).write_bytes(data)
        print(f"{folder}: {len(list(folder.iterdir()))} seeds")


if __name__ == "__main__":
    main()
