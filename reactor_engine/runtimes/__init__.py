"""The runtimes that serve an ``Engine``: ``http`` (server + browser viewer) and ``headless`` (files)."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reactor_engine.engine import Engine

RUNTIMES = ("http", "headless")

__all__ = ["RUNTIMES", "exit_now_if_the_model_still_runs"]

_log = logging.getLogger("reactor_engine.runtimes")


def exit_now_if_the_model_still_runs(engine: Engine, code: int) -> None:
    """A hung model's thread (it ignored ``should_stop()``) may be inside native code (torch, numpy)
    when the interpreter finalizes, and CPython 3.11 ends such a thread with a forced unwind that
    aborts the process (134). Its result is written by now: leave without finalizing."""
    if engine.model_thread_alive:
        _log.warning("the model's session thread still runs (it ignores should_stop()); exiting without it")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
