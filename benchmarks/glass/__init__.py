"""Glass-to-glass latency: a stamped model, its decoder, and the harness around them.

- ``stamp``: the frame-index pattern (``paint_index`` / ``decode_index``), the moving background, and
  ``StampedSource``, the runtime-neutral model body that renders, paces and logs each emission;
- ``engine_model`` / ``peer_app``: the same source as a reactor-engine model and as a reactor-runtime
  3.x ``ReactorApp`` (thin adapters);
- ``netns`` / ``stun``: a throwaway network namespace and a STUN binding responder for WebRTC peers;
- ``servers`` / ``client``: the server processes, and the measuring client (reactor-sdk or WebSocket).

Only numpy is needed to import ``stamp``, ``netns`` and ``stun`` (the peer runtime's Python 3.12 venv
imports ``stamp``). ``benchmarks/bench_glass.py`` is the entry point.
"""
