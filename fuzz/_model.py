"""A model whose commands take every parameter type ``@command`` supports (the commands and ws targets).

Imported by a target inside its instrumentation block, after ``reactor_engine``'s own modules.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from reactor_engine import CommandError, VideoModel, command, model

Style = Literal["plain", "sketch", "neon"]
STYLES = ("plain", "sketch", "neon")


@model(name="fuzz-commands")
class FuzzModel(VideoModel):
    """Every handler returns its arguments, so a reply shows what validation let through."""

    @command("set_text", description="a required str")
    def set_text(self, text: str) -> dict[str, Any]:
        return {"text": text}

    @command("set_count")
    def set_count(self, count: int) -> dict[str, Any]:
        return {"count": count}

    @command("set_scale")
    def set_scale(self, scale: float) -> dict[str, Any]:
        return {"scale": scale}

    @command("set_flag")
    def set_flag(self, flag: bool) -> dict[str, Any]:
        return {"flag": flag}

    @command("set_style")
    def set_style(self, style: Style = "plain") -> dict[str, Any]:
        return {"style": style}

    @command("set_level")
    def set_level(self, level: int = Field(5, ge=0, le=10, description="bounded int")) -> dict[str, Any]:
        return {"level": level}

    @command("set_speed")
    def set_speed(
        self, speed: float = Field(1.0, ge=0.0, le=5.0, description="bounded float")
    ) -> dict[str, Any]:
        return {"speed": speed}

    @command("set_seed")
    def set_seed(self, seed: Optional[int] = None, label: str | None = None) -> dict[str, Any]:  # noqa: UP045
        return {"seed": seed, "label": label}

    @command("configure", description="every kind at once")
    def configure(
        self,
        prompt: str,
        steps: int = Field(4, ge=1, le=50),
        guidance: float = Field(7.5, ge=0.0, le=20.0),
        enabled: bool = True,
        style: Style = "plain",
        seed: int | None = None,
        ratio: Optional[float] = None,  # noqa: UP045
    ) -> dict[str, Any]:
        return {
            "prompt": prompt, "steps": steps, "guidance": guidance, "enabled": enabled,
            "style": style, "seed": seed, "ratio": ratio,
        }  # fmt: skip

    @command("reset")
    def reset(self) -> None:
        return None

    @command("refuse")
    def refuse(self, why: str = "no") -> None:
        raise CommandError(f"refused: {why}")

    def start_session(self) -> None:
        pass


# name -> {parameter: (kind, bounds)}: what validate must return, checked by the commands target.
EXPECTED: dict[str, dict[str, tuple[str, tuple[float, float] | None]]] = {
    "set_text": {"text": ("str", None)},
    "set_count": {"count": ("int", None)},
    "set_scale": {"scale": ("float", None)},
    "set_flag": {"flag": ("bool", None)},
    "set_style": {"style": ("style", None)},
    "set_level": {"level": ("int", (0, 10))},
    "set_speed": {"speed": ("float", (0.0, 5.0))},
    "set_seed": {"seed": ("int?", None), "label": ("str?", None)},
    "configure": {
        "prompt": ("str", None),
        "steps": ("int", (1, 50)),
        "guidance": ("float", (0.0, 20.0)),
        "enabled": ("bool", None),
        "style": ("style", None),
        "seed": ("int?", None),
        "ratio": ("float?", None),
    },
    "reset": {},
    "refuse": {"why": ("str", None)},
}
