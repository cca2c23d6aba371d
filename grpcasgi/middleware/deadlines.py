"""Server-side deadline policy: a default for calls without one, a cap for all.

Clients that send no ``grpc-timeout`` would otherwise let a stuck handler
run forever, and a client asking for an hour holds resources for an hour.
``DeadlineMiddleware`` shortens ``scope["deadline"]``; the runtime re-arms
the call's timer before the handler runs (``docs/spec.md``, "Deadlines"),
so expiry cancels the handler and the client receives DEADLINE_EXCEEDED.

Outgoing calls made by the handler through a :class:`~grpcasgi.client.Channel`
inherit the effective deadline (``Configuration.propagate_deadline``), so
the policy also bounds the whole call tree below this server.
"""

from __future__ import annotations

import math
from typing import Awaitable

from ..deadline import Deadline, earliest
from ..types import App, Receive, Scope, Send

__all__ = ["DeadlineMiddleware"]


def _seconds(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise ValueError(f"DeadlineMiddleware {name}= must be a positive number of seconds, got {value!r}")
    return float(value)


class DeadlineMiddleware:
    """Give calls without a deadline ``default`` seconds; cap every call at ``maximum`` seconds.

    Place it outermost (or right after logging) so the layers after it, not
    only the handler, see the effective deadline in ``scope["deadline"]``.
    """

    def __init__(self, app: App, *, default: float | None = None, maximum: float | None = None) -> None:
        self.app = app
        self.default = _seconds(default, "default")
        self.maximum = _seconds(maximum, "maximum")
        if self.default is not None and self.maximum is not None and self.default > self.maximum:
            raise ValueError("DeadlineMiddleware default= must not exceed maximum=")

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: nothing happens after the inner app, so it adds
        # no frame to the call (docs/spec.md, section 1).
        deadline = scope["deadline"]
        if deadline is None and self.default is not None:
            deadline = Deadline.from_timeout(self.default)
        if self.maximum is not None:
            deadline = earliest(deadline, Deadline.from_timeout(self.maximum))
        if deadline is not scope["deadline"]:
            scope["deadline"] = deadline
        return self.app(scope, receive, send)
