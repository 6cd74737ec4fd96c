"""Embed reactor-engine in a host program: start the engine, send a command, read encoded frames.

python examples/embed.py
"""

from __future__ import annotations

from pathlib import Path

from reactor_engine import Engine

MODEL = Path(__file__).parent / "torch_plasma" / "model.py"


def main() -> None:
    # The model is loaded once here; its native ring and encoder are allocated here too.
    with Engine(MODEL, model_config={"width": 320, "height": 240}, engine_config={"codec": "jpeg"}) as engine:
        with engine.session() as session:  # start_session() now runs on the session thread
            reply = session.send_command("set_palette", {"palette": "ocean"})
            print("command reply:", reply)
            for packet in session.packets(timeout=10.0):
                with packet:  # the packet's buffer returns to the pool at the end of the block
                    jpeg = bytes(packet)
                    print(
                        f"frame {packet.frame_index}: {packet.width}x{packet.height} jpeg, {len(jpeg)} bytes"
                    )
                if packet.frame_index >= 29:
                    break
        stats = session.stats()
        first_ms = stats["time_to_first_frame_ms"]
        print(f"{stats['frames']} frames at {stats['fps']:.1f} fps; the first after {first_ms:.1f} ms")


if __name__ == "__main__":
    main()
