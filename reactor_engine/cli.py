"""The ``reactor-engine`` command: ``run``, ``init``, ``capabilities``, ``info`` and ``bench``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import string
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reactor_engine.config import CliOverrides, split_cli_overrides
from reactor_engine.errors import ReactorError
from reactor_engine.logs import configure_logging
from reactor_engine.runtimes import exit_now_if_the_model_still_runs

__all__ = ["DEMO_TARGET", "main"]

_log = logging.getLogger("reactor_engine.cli")

DEMO_TARGET = "reactor_engine.demo:DemoModel"
SCAFFOLD_DIR = Path(__file__).resolve().parent / "scaffold"
_NAME_RULE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


# -- argument parsing --------------------------------------------------------------------------------


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number >= 0); got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds (a number >= 0); got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535; got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port); got {value}")
    return value


def _target_help(default: str) -> str:
    return f"the model: FILE.py[:Class], a folder (its model.py), or module:Class (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reactor-engine",
        description="Serve real-time video models as live, interactive streams.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="serve a model (http: a viewer at http://127.0.0.1:8080/; headless: to files)",
        description=(
            "Serve a model. Model settings: --model.KEY=VALUE (over its config file and -c FILE); "
            "engine settings: --engine.KEY=VALUE (`reactor-engine info --engine-defaults` lists them)."
        ),
        allow_abbrev=False,
    )
    run.add_argument("target", nargs="?", help=_target_help("the built-in demo"))
    run.add_argument("--runtime", choices=("http", "headless"), default="http", help="default: http")
    run.add_argument("-c", "--config", metavar="FILE", help="a YAML file layered over the model's config")
    run.add_argument(
        "--orphan-timeout",
        type=_non_negative,
        metavar="S",
        help="stop a session after S s without a client (0: never; default: engine config, 30)",
    )
    run.add_argument(
        "--max-session-duration",
        type=_non_negative,
        metavar="S",
        help="stop a session after S s (0: no limit, the default)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logs and the HTTP access log")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("REACTOR_LOG_FORMAT", "text"),
        help="log lines as text or JSON (default: $REACTOR_LOG_FORMAT or text)",
    )
    http = run.add_argument_group("http runtime")
    http.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    http.add_argument("--port", type=_port, default=8080, help="port (default: 8080; 0: any free port)")
    http.add_argument("--max-clients", type=_positive_int, default=8, help="clients per session (default: 8)")
    http.add_argument(
        "--auth-token", metavar="TOKEN", default=os.environ.get("REACTOR_AUTH_TOKEN") or None,
        help="every request must carry it (Authorization: Bearer TOKEN, or ?token=TOKEN in the URL); "
        "required to bind a non-loopback --host (default: $REACTOR_AUTH_TOKEN)",
    )  # fmt: skip
    webrtc = run.add_argument_group(
        "WebRTC (the Reactor clients and the viewer; loopback needs none of these)"
    )
    webrtc.add_argument(
        "--ice-server", action="append", metavar="URL[|USER|PASSWORD]", default=None,
        help="a STUN or TURN server for the server's peers, also handed to clients (repeatable; "
        "default: $REACTOR_ICE_SERVERS, space-separated)",
    )  # fmt: skip
    webrtc.add_argument(
        "--udp-ports", metavar="MIN-MAX", default=os.environ.get("REACTOR_UDP_PORTS") or None,
        help="the UDP port range ICE binds, for a firewall (default: $REACTOR_UDP_PORTS, or any)",
    )  # fmt: skip
    webrtc.add_argument(
        "--advertise", metavar="IP", default=os.environ.get("REACTOR_ADVERTISE_ADDRESS") or None,
        help="an address clients reach the server at (a NAT's public one), added to every answer "
        "(default: $REACTOR_ADVERTISE_ADDRESS)",
    )  # fmt: skip
    webrtc.add_argument(
        "--cors-origin", action="append", metavar="ORIGIN", default=None,
        help="a web app origin allowed to call the WebRTC routes, e.g. https://app.example (repeatable; "
        "'*': any; default: $REACTOR_CORS_ORIGINS, else pages on this machine only)",
    )  # fmt: skip
    http.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --host without an access token: anyone who can reach it may use it",
    )  # fmt: skip
    http.add_argument(
        "--replicas", type=_positive_int, metavar="N",
        help="serve N replicas (one engine each) behind one ingress on a local Ray Serve (the ray extra)",
    )  # fmt: skip
    http.add_argument(
        "--replica-gpus", type=float, default=0.0, metavar="G", help="GPUs per replica (default: 0)"
    )
    headless = run.add_argument_group("headless runtime")
    headless.add_argument("--output", metavar="DIR", help="folder for frames and stats.json (required)")
    headless.add_argument("--frames", type=_positive_int, metavar="N", help="end the session after N frames")
    headless.add_argument(
        "--seconds", type=_non_negative, metavar="S", help="end the session after S seconds"
    )
    headless.add_argument(
        "--commands",
        metavar="FILE.jsonl",
        help='commands to send: one {"type", "data", "at_frame" | "at_s"} per line',
    )
    headless.add_argument(
        "--format",
        choices=("jpeg", "mjpeg", "raw"),
        default="jpeg",
        help="jpeg: frame_NNNNNN.jpg files; mjpeg: one stream.mjpeg; raw: frames.rgb24",
    )
    headless.add_argument(
        "--input", metavar="DIR", help="images (.jpg .png .ppm .npy) fed in name order to the model's "
        "VideoIn; the run ends after them. Video files are not read (PyAV is not a dependency)",
    )  # fmt: skip
    headless.add_argument("--input-fps", type=_non_negative, metavar="FPS", help="--input rate (default: 30)")
    run.set_defaults(handler=_run)  # fmt: skip

    init = sub.add_parser("init", help="create a model project that runs with `reactor-engine run NAME`")
    init.add_argument("name", help="folder to create; its name is the model name (e.g. my-model)")
    init.set_defaults(handler=_init)

    caps = sub.add_parser("capabilities", help="print a model's commands as JSON without instantiating it")
    caps.add_argument("target", nargs="?", help=_target_help("the built-in demo"))
    caps.set_defaults(handler=_capabilities)

    info = sub.add_parser("info", help="print build features (CUDA, codecs, pinning) and GPU telemetry")
    info.add_argument("--json", action="store_true", help="as JSON")
    info.add_argument(
        "--engine-defaults", action="store_true",
        help="print the engine settings (--engine.KEY=VALUE) with their defaults and what each does",
    )  # fmt: skip
    info.set_defaults(handler=_info)

    bench = sub.add_parser("bench", help="run one in-process session and print its latency and fps")
    bench.add_argument("target", nargs="?", help=_target_help("the built-in demo"))
    bench.add_argument("--seconds", type=_non_negative, default=5.0, help="how long (default: 5)")
    bench.add_argument("-c", "--config", metavar="FILE", help="a YAML file layered over the model's config")
    bench.set_defaults(handler=_bench)

    from reactor_engine.serve.deploy import add_command as add_serve_command

    add_serve_command(sub)  # reactor-engine serve CONFIG.yaml: onto a Ray cluster (docs/scale-out.md)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reactor-engine``; returns the exit code (2 for a usage or config error)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        overrides = split_cli_overrides(args_in)
    except ReactorError as exc:
        parser.error(str(exc))
    args = parser.parse_args(overrides.rest)
    if (overrides.model or overrides.engine) and args.command not in ("run", "bench"):
        parser.error(f"--model.* and --engine.* apply to run and bench, not {args.command}")
    try:
        code: int = args.handler(args, overrides)
    except ReactorError as exc:
        print(f"reactor-engine: error: {exc}", file=sys.stderr)
        return 2
    return code


# -- run ---------------------------------------------------------------------------------------------


def _engine_overrides(args: argparse.Namespace, overrides: CliOverrides) -> list[str]:
    engine = list(overrides.engine)
    if getattr(args, "orphan_timeout", None) is not None:
        engine.append(f"orphan_timeout={args.orphan_timeout}")
    if getattr(args, "max_session_duration", None) is not None:
        engine.append(f"max_session_duration={args.max_session_duration}")
    return engine


def _run(args: argparse.Namespace, overrides: CliOverrides) -> int:
    configure_logging(args.verbose, args.log_format)
    engine_overrides = _engine_overrides(args, overrides)
    if args.runtime == "headless":
        return _run_headless(args, overrides, engine_overrides)
    if args.output or args.frames or args.seconds is not None or args.commands or args.input:
        raise _usage("--output, --frames, --seconds, --commands and --input belong to --runtime headless")
    # The http runtime's own default: VP8 for WebRTC (the Reactor clients, the viewer), JPEG encoded
    # beside it only while a WebSocket or MJPEG client reads it. --engine.codec / extra_codecs win.
    if not any(entry.startswith(("codec=", "extra_codecs=")) for entry in engine_overrides):
        engine_overrides += ["codec=vp8", "extra_codecs=[jpeg]"]
    from reactor_engine.engine import Engine
    from reactor_engine.runtimes.http import HttpOptions, serve
    from reactor_engine.transports.guard import LOOPBACK_HOSTS

    if args.host not in LOOPBACK_HOSTS and args.auth_token is None and not args.insecure:
        raise _usage(
            f"--host {args.host} makes the server reachable from other machines: set an access token "
            f"(--auth-token TOKEN or the REACTOR_AUTH_TOKEN environment variable), or pass --insecure"
        )
    if args.insecure and args.auth_token is None and args.host not in LOOPBACK_HOSTS:
        _log.warning("binding %s with --insecure: anyone who can reach it may use it", args.host)
    # Every option is checked before the model loads: a bad flag must not leave a load running at exit.
    from reactor_engine.transports.webrtc.options import from_flags

    webrtc = from_flags(args.ice_server, args.udp_ports, args.advertise, args.cors_origin)
    options = HttpOptions(max_clients=args.max_clients, auth_token=args.auth_token, webrtc=webrtc)
    if args.replicas:  # scale-out: reactor_engine.serve (docs/scale-out.md)
        from reactor_engine.serve.app import run_from_cli

        return run_from_cli(args, args.target or DEMO_TARGET, overrides.model, engine_overrides, options)
    target = args.target or DEMO_TARGET
    engine = Engine(target, overrides.model, engine_overrides, config_file=args.config, load=False)
    _load_in_background(engine)
    token_query = f"?token={args.auth_token}" if args.auth_token else ""
    try:
        serve(
            engine,
            args.host,
            args.port,
            options,
            access_log=args.verbose,
            on_started=lambda url: _log.info("serving model '%s': open %s%s", engine.name, url, token_query),
            insecure=args.insecure,
        )
    finally:
        engine.close()
    _log.info("stopped")
    exit_now_if_the_model_still_runs(engine, 0)
    return 0


def _load_in_background(engine: Any) -> None:
    """Load the model on a thread so the server answers (``/health``: loading) meanwhile; log progress."""
    started = time.monotonic()
    _log.info("loading model '%s'...", engine.name)
    engine.load(background=True)

    def report() -> None:
        while engine.wait_ready(10.0) == "loading":
            _log.info("still loading model '%s' (%.0f s)", engine.name, time.monotonic() - started)
        if engine.state == "error":
            _log.error("model '%s' failed to load: %s", engine.name, engine.error)
        else:
            _log.info("model '%s' loaded in %.2f s", engine.name, time.monotonic() - started)

    threading.Thread(target=report, name="reactor-load-progress", daemon=True).start()


def _run_headless(args: argparse.Namespace, overrides: CliOverrides, engine_overrides: list[str]) -> int:
    from reactor_engine.engine import Engine
    from reactor_engine.runtimes.headless import FORMATS, HeadlessOptions, run_headless

    if not args.output:
        raise _usage("--runtime headless needs --output DIR")
    if args.frames is not None and args.seconds is not None:
        raise _usage("give --frames or --seconds, not both")
    codec = FORMATS[args.format]
    if not any(entry.startswith("codec=") for entry in engine_overrides):
        engine_overrides.append(f"codec={codec}")
    options = HeadlessOptions(
        output=Path(args.output),
        frames=args.frames,
        seconds=args.seconds,
        commands=Path(args.commands) if args.commands else None,
        format=args.format,
        input=Path(args.input) if args.input else None,
        input_fps=args.input_fps or None,
    )
    from reactor_engine.runtimes.headless import check_options

    check_options(options)  # a bad --output, --commands or --input fails before the model loads
    target = args.target or DEMO_TARGET
    engine = Engine(target, overrides.model, engine_overrides, config_file=args.config, load=False)
    started = time.monotonic()  # after the model file's imports: "loaded in" is the model's own load
    _log.info("loading model '%s'...", engine.name)
    engine.load()
    _log.info("model '%s' loaded in %.2f s", engine.name, time.monotonic() - started)
    try:
        code = run_headless(engine, options, sys.stdin, sys.stdout)
    finally:
        engine.close()
    exit_now_if_the_model_still_runs(engine, code)
    return code


class _UsageError(ReactorError, ValueError):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


# -- init --------------------------------------------------------------------------------------------


def _init(args: argparse.Namespace, overrides: CliOverrides) -> int:
    folder = Path(args.name)
    name = folder.name
    if not _NAME_RULE.match(name):
        raise _usage(
            f"{name!r} is not a valid model name: use lowercase letters and digits in words joined by "
            f"single hyphens, e.g. 'my-model'"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise _usage(f"{folder} already exists and is not an empty folder; choose another name")
    class_name = "".join(part.capitalize() for part in name.split("-"))
    if not class_name[0].isalpha():
        class_name = "Model" + class_name
    values = {"name": name, "class_name": class_name, "folder": str(folder)}
    folder.mkdir(parents=True, exist_ok=True)
    for template in sorted(SCAFFOLD_DIR.glob("*.tmpl")):
        text = string.Template(template.read_text(encoding="utf-8")).substitute(values)
        (folder / template.name.removesuffix(".tmpl")).write_text(text, encoding="utf-8")
    print(f"Created {folder}/ with model '{name}' ({class_name} in {folder / 'model.py'}).")
    print(f"Run it: {_own_command()} run {folder}    (then open http://127.0.0.1:8080/)")
    return 0


def _own_command() -> str:
    """How to call this CLI again: ``reactor-engine`` when that is on PATH, else its path (a venv's)."""
    script = Path(sys.argv[0])
    on_path = shutil.which("reactor-engine")
    if script.name == "reactor-engine" and (on_path is None or Path(on_path).resolve() != script.resolve()):
        with contextlib.suppress(ValueError):
            return str(script.resolve().relative_to(Path.cwd().resolve()))
        return str(script)
    return "reactor-engine"


# -- capabilities ------------------------------------------------------------------------------------


def _capabilities(args: argparse.Namespace, overrides: CliOverrides) -> int:
    from reactor_engine.model import load_model_class, model_spec

    cls = load_model_class(args.target or DEMO_TARGET)  # imports the module; the model is not instantiated
    spec = model_spec(cls)
    out = {"model": spec.name, "capabilities": cls.capabilities(), "schema": cls.command_schema()}
    print(json.dumps(out, indent=2))
    return 0


# -- info --------------------------------------------------------------------------------------------


def _info(args: argparse.Namespace, overrides: CliOverrides) -> int:
    if args.engine_defaults:
        from reactor_engine.config import DEFAULT_ENGINE_CONFIG

        print(DEFAULT_ENGINE_CONFIG.read_text(encoding="utf-8"), end="")
        return 0
    from reactor_engine.info import collect_info

    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    build, gpu = info["build"], info["gpu"]
    print(f"reactor-engine {info['version']} (Python {info['python']})")
    print(f"native core: {build.get('build_type', '?')} build, compiler {build.get('compiler', '?')}")
    print(f"  codecs: raw, i420, jpeg ({build.get('jpeg', 'unknown')}), vp8 ({build.get('vp8', 'unknown')})")
    cuda = build.get("cuda", "?")
    archs = f", archs {build['cuda_archs']}" if build.get("cuda_archs") else ""
    print(
        f"  cuda: built {cuda} ({build.get('cuda_reason', '')}{archs}); at run time: {info['cuda_runtime']}"
    )
    memory = info["host_memory"]
    print(f"  host memory pinning: {memory.get('pinning')}; hugepages: {memory.get('hugepages', 'n/a')}")
    print("packages: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in info["packages"].items()))
    if gpu["available"]:
        from reactor_engine.telemetry import gpu_telemetry

        print(f"GPU (driver {gpu['driver_version']}):")
        for line in gpu_telemetry().describe().splitlines():
            print(f"  {line}")
    else:
        print(f"GPU: {gpu['unavailable']}")
    return 0


# -- bench -------------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace, overrides: CliOverrides) -> int:
    from reactor_engine.engine import Engine

    configure_logging(False, "text")
    with Engine(
        args.target or DEMO_TARGET, overrides.model, overrides.engine, config_file=args.config
    ) as engine:
        session = engine.session()
        deadline = time.monotonic() + args.seconds
        with session:
            for packet in session.packets(timeout=10.0):
                packet.release()
                if time.monotonic() >= deadline:
                    break
        stats = session.stats()
    track = stats["tracks"][next(iter(stats["tracks"]))]
    print(
        json.dumps(
            {
                "model": engine.name,
                "seconds": args.seconds,
                "frames": stats["frames"],
                "fps": round(stats["fps"], 2),
                "drops": stats["drops"],
                "time_to_first_frame_ms": stats["time_to_first_frame_ms"],
                "emit_ms": track["emit"],
                "encode_ms": track["encode"],
                "commit_to_packet_ms": track["commit_to_packet"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
