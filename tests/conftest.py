"""Shared test helpers: a small engine configuration that keeps frames tiny and tests fast."""

from __future__ import annotations

import pytest

SMALL_ENGINE = {
    "max_width": 64,
    "max_height": 48,
    "width": 32,
    "height": 24,
    "codec": "raw",
    "ring_policy": "block",
    "stop_grace": 5.0,
}


@pytest.fixture
def small_engine_config():
    return dict(SMALL_ENGINE)
