"""The runtimes that serve an ``Engine``: ``http`` (server + browser viewer) and ``headless`` (files)."""

from __future__ import annotations

RUNTIMES = ("http", "headless")

__all__ = ["RUNTIMES"]
