"""The `reactor-engine` command: init, capabilities, info, and its argument errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reactor_engine.cli import main


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "reactor-engine"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reactor_engine.cli"]
    return subprocess.run(
        [*command, *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


def test_init_scaffolds_a_project_that_runs_with_reactor_engine_run(tmp_path):
    done = run_cli("init", "my-model", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "reactor-engine run my-model" in done.stdout
    assert sorted(p.name for p in (tmp_path / "my-model").iterdir()) == [
        "README.md", "config.yaml", "model.py", "requirements.txt",
    ]  # fmt: skip
    caps = run_cli("capabilities", "my-model", cwd=tmp_path)
    assert caps.returncode == 0, caps.stderr
    assert json.loads(caps.stdout)["model"] == "my-model"
    size = ("--model.width=32", "--model.height=24")
    ran = run_cli(
        "run", "my-model", "--runtime", "headless", "--output", "out", "--frames", "3", *size, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert len(list((tmp_path / "out").glob("frame_*.jpg"))) == 3


def test_init_refuses_an_invalid_name_and_an_existing_folder(tmp_path):
    bad = run_cli("init", "My_Model", cwd=tmp_path)
    assert bad.returncode == 2 and "not a valid model name" in bad.stderr and "my-model" in bad.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    taken = run_cli("init", "taken", cwd=tmp_path)
    assert taken.returncode == 2 and "already exists" in taken.stderr


def test_capabilities_prints_the_schema_without_instantiating_the_model(tmp_path):
    (tmp_path / "model.py").write_text(
        "from typing import Literal\n"
        "from reactor_engine import VideoModel, command, model\n"
        "@model(name='no-init')\n"
        "class NoInit(VideoModel):\n"
        "    def __init__(self, config):\n"
        "        raise RuntimeError('weights are not here')\n"
        "    @command('pick', description='choose')\n"
        "    def pick(self, choice: Literal['a', 'b']) -> None: ...\n"
        "    def start_session(self): ...\n"
    )
    done = run_cli("capabilities", "model.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"] == "no-init"
    assert out["schema"]["pick"]["properties"]["choice"]["enum"] == ["a", "b"]
    assert [c["name"] for c in out["capabilities"]["commands"]] == ["pick"]


def test_capabilities_of_the_builtin_demo_lists_its_controls(tmp_path):
    done = run_cli("capabilities", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)["schema"]
    assert set(schema) == {"set_prompt", "move", "set_speed", "set_brightness", "pause", "reset"}


def test_info_reports_build_features_and_gpu_telemetry_or_why_there_is_none(tmp_path):
    done = run_cli("info", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "codecs: raw, i420, jpeg" in done.stdout and "host memory pinning:" in done.stdout
    gpu_line = next(line for line in done.stdout.splitlines() if line.startswith("GPU"))
    as_json = json.loads(run_cli("info", "--json", cwd=tmp_path).stdout)
    if as_json["gpu"]["available"]:
        assert as_json["gpu"]["devices"]
    else:
        assert gpu_line.startswith("GPU: no NVIDIA GPU: ")
        assert as_json["gpu"]["unavailable"].startswith("no NVIDIA GPU: ")
    assert as_json["build"]["jpeg"]


def test_the_space_form_of_an_override_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["run", "--model.width", "32"])
    assert exited.value.code == 2
    assert "--model.width=VALUE" in capsys.readouterr().err


def test_a_wrongly_typed_engine_override_names_the_setting(capsys, tmp_path):
    assert main(["run", "--runtime", "headless", "--output", str(tmp_path), "--engine.ring_slots=many"]) == 2
    err = capsys.readouterr().err
    assert "ring_slots" in err and "many" in err


def test_headless_flags_are_refused_for_the_http_runtime(capsys):
    assert main(["run", "--frames", "3"]) == 2
    assert "belong to --runtime headless" in capsys.readouterr().err


def test_a_bad_port_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--port", "70000"])
    assert "port number 0-65535" in capsys.readouterr().err


def test_the_init_hint_names_the_command_as_it_can_be_run(tmp_path):
    script = Path(sys.executable).parent / "reactor-engine"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # this venv is not on PATH
    done = subprocess.run(
        [str(script), "init", "my-model"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert f"Run it: {script} run my-model" in done.stdout


def test_engine_defaults_are_printed_by_info_and_named_by_run_help(tmp_path):
    defaults = run_cli("info", "--engine-defaults", cwd=tmp_path)
    assert defaults.returncode == 0, defaults.stderr
    assert "ring_policy: drop_oldest" in defaults.stdout and "stop_grace:" in defaults.stdout
    helped = run_cli("run", "--help", cwd=tmp_path)
    assert "reactor-engine info --engine-defaults" in "".join(helped.stdout.split("\n"))
    assert "configs/default.yaml" not in helped.stdout


def test_a_syntax_error_in_a_model_file_is_a_one_line_error(tmp_path):
    (tmp_path / "model.py").write_text("def broken(:\n")
    done = run_cli("capabilities", "model.py", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("reactor-engine: error: syntax error in") and "Traceback" not in done.stderr


def test_a_non_loopback_bind_without_a_token_is_refused_with_how_to_set_one(tmp_path):
    done = run_cli("run", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert "--auth-token TOKEN or the REACTOR_AUTH_TOKEN environment variable" in done.stderr
    assert "--insecure" in done.stderr


def test_webrtc_network_options_come_from_flags_or_the_environment(monkeypatch):
    from reactor_engine.cli import build_parser
    from reactor_engine.transports.webrtc.options import from_flags

    def options(*argv: str):
        args = build_parser().parse_args(["run", *argv])
        return from_flags(args.ice_server, args.udp_ports, args.advertise, args.cors_origin)

    monkeypatch.setenv("REACTOR_ICE_SERVERS", "stun:stun.example:3478 turn:turn.example:3478|me|pw")
    monkeypatch.setenv("REACTOR_CORS_ORIGINS", "https://app.example")
    from_env = options()
    assert [s.urls for s in from_env.ice_servers] == [
        ("stun:stun.example:3478",),
        ("turn:turn.example:3478",),
    ]
    assert from_env.ice_servers[1].username == "me" and from_env.cors_origins == ("https://app.example",)
    flags = options(
        "--ice-server", "stun:other:3478", "--udp-ports", "50000-50100", "--advertise", "203.0.113.7"
    )
    assert [s.urls for s in flags.ice_servers] == [("stun:other:3478",)]
    assert (flags.port_min, flags.port_max, flags.advertised_address) == (50000, 50100, "203.0.113.7")


def test_a_bad_udp_port_range_is_a_one_line_error(tmp_path):
    done = run_cli("run", "--udp-ports", "5-3", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "port range 5-3" in done.stderr and "Traceback" not in done.stderr
