"""Serve a model over the http app (the Reactor local protocol included) for the WebRTC tests.

Run inside a test's network namespace: ``python tests/webrtc_server.py --port 8080 --stun URL
[--webrtc KEY=VALUE ...] [--engine KEY=VALUE ...] [--model-config KEY=VALUE ...] [MODEL]``. Values
are JSON (or plain strings); ``--webrtc`` ones are ``WebRtcOptions`` fields. It prints ``listening
URL`` once serving; SIGTERM stops it. The app is the one ``reactor-engine run`` serves; only the
options come from here instead of the CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from reactor_engine import Engine
from reactor_engine.runtimes.http import HttpOptions, serve
from reactor_engine.transports.webrtc import IceServer, WebRtcOptions

HERE = Path(__file__).resolve().parent


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default=str(HERE / "webrtc_model.py"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--stun", action="append", default=[])
    parser.add_argument("--webrtc", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--hub", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--model-config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    webrtc = {key: _value(value) for key, _, value in (item.partition("=") for item in args.webrtc)}
    hub = {key: _value(value) for key, _, value in (item.partition("=") for item in args.hub)}
    for key in ("ice_servers", "cors_origins"):
        if key in webrtc and isinstance(webrtc[key], list):
            webrtc[key] = tuple(webrtc[key])
    options = WebRtcOptions(ice_servers=tuple(IceServer((url,)) for url in args.stun), **webrtc)  # type: ignore[arg-type]
    engine_config = {"codec": "vp8", **{k: _value(v) for k, _, v in (i.partition("=") for i in args.engine)}}
    model_config = {k: _value(v) for k, _, v in (i.partition("=") for i in args.model_config)}
    with Engine(args.model, model_config=model_config, engine_config=engine_config) as engine:
        serve(
            engine,
            args.host,
            args.port,
            HttpOptions(webrtc=options, **hub),  # type: ignore[arg-type]
            on_started=lambda url: print(f"listening {url}", flush=True),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
