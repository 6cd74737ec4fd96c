"""The push budget of a WebRTC peer's video: what libwebrtc will take without dropping input frames.

A leaky bucket of bits that drains at the peer's target bitrate (its last ``RateUpdate``). Why the
transport keeps one, and what reactor-webrtc 0.24.2 does with a frame libwebrtc drops, is in
``media.py``'s docstring. Loop thread only.
"""

from __future__ import annotations

import time

__all__ = ["PushBudget"]

# Seconds of the target bitrate the bucket holds (libwebrtc's frame dropper trips at 0.5 s), the
# seconds a key frame is spread over (as that dropper spreads it), and the fill under which a peer
# that skipped frames asks for the key frame it resumes on.
_BUDGET_WINDOW_S = 0.3
_KEYFRAME_SPREAD_S = 0.5
_RESUME_FILL = 0.25
# After libwebrtc drops an input (``back_off``): the first pause, and the longest.
_BACKOFF_S = 0.5
_BACKOFF_MAX_S = 2.0


class PushBudget:
    """A leaky bucket of bits that drains at a peer's target bitrate (``rate``, bit/s; 0: no limit yet).

    It holds ``_BUDGET_WINDOW_S`` seconds of the rate. A delta frame adds its bits at once; a key
    frame adds them over ``_KEYFRAME_SPREAD_S``, as libwebrtc's frame dropper counts them."""

    def __init__(self) -> None:
        self.rate = 0
        self.level = 0.0
        self._spread = 0.0  # key-frame bits still to come in
        self._spread_rate = 0.0
        self._at = time.monotonic()
        self.backoff_s = 0.0
        self._shut_at = self._shut_until = -1e9

    @property
    def capacity(self) -> float:
        return self.rate * _BUDGET_WINDOW_S

    def drain(self, now: float) -> None:
        elapsed, self._at = max(0.0, now - self._at), now
        added = min(self._spread, self._spread_rate * elapsed)
        self._spread -= added
        self.level = max(0.0, self.level + added - self.rate * elapsed) if self.rate else 0.0

    def fits(self, bits: int) -> bool:
        return not self.rate or self.level + bits <= self.capacity

    @property
    def drained(self) -> bool:
        return self._at >= self._shut_until and (
            not self.rate or self.level + self._spread <= _RESUME_FILL * self.capacity
        )

    def add(self, bits: int, keyframe: bool) -> None:
        if keyframe:
            self._spread += bits
            self._spread_rate = self._spread / _KEYFRAME_SPREAD_S
        else:
            self.level += bits

    def back_off(self, now: float) -> None:
        """libwebrtc dropped an input: nothing more until a whole bucket has drained and the back-off
        (doubled when the last drop was recent, up to ``_BACKOFF_MAX_S``) has passed."""
        recent = now - self._shut_at < 2 * _BACKOFF_MAX_S
        self.backoff_s = min(_BACKOFF_MAX_S, 2 * self.backoff_s) if recent else _BACKOFF_S
        self._shut_at, self._shut_until = now, now + self.backoff_s
        self.level = max(self.level, self.capacity)
