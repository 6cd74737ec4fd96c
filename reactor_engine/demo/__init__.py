"""The built-in demo model that ``reactor-engine run`` serves when no model is named."""

from __future__ import annotations

from reactor_engine.demo.model import DemoModel

__all__ = ["DemoModel"]
