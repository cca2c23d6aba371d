"""Deadlines: absolute points on the monotonic clock.

A timeout arrives as a duration (``grpc-timeout``) but is turned into a
deadline at once, so that time spent queueing, in middleware or in an
outgoing call made by a handler counts against it. The current call's
deadline is also kept in a context variable so that outgoing client calls made
inside a handler can inherit what remains of it.
"""

from __future__ import annotations

import contextvars
import time

__all__ = ["Deadline", "current_deadline"]


class Deadline:
    """An absolute deadline (``time.monotonic()`` seconds), immutable and ordered."""

    __slots__ = ("_when",)

    def __init__(self, *, _timestamp: float) -> None:
        self._when = _timestamp

    @classmethod
    def from_timeout(cls, timeout: float) -> "Deadline":
        return cls(_timestamp=time.monotonic() + timeout)

    @property
    def when(self) -> float:
        """The deadline on the ``time.monotonic()`` clock (asyncio's default loop clock)."""
        return self._when

    def time_remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._when - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self._when

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Deadline):
            return NotImplemented
        return self._when < other._when

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Deadline):
            return NotImplemented
        return self._when <= other._when

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Deadline):
            return NotImplemented
        return self._when == other._when

    def __hash__(self) -> int:
        return hash(self._when)

    def __repr__(self) -> str:
        return f"Deadline(in {self._when - time.monotonic():.3f}s)"


#: The deadline of the server call being handled in this context, if any.
#: Outgoing client calls inherit it when propagation is enabled.
current_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "grpcasgi_current_deadline", default=None
)


def earliest(a: Deadline | None, b: Deadline | None) -> Deadline | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a._when <= b._when else b
