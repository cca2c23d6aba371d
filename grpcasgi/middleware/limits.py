"""Load limits: how many calls run at once, how often a client may call.

Both reject with RESOURCE_EXHAUSTED *before* the inner layers run, which is
what gRPC clients and retry policies expect for "try again later" (the rate
limiter adds a ``google.rpc.RetryInfo`` detail saying when).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Any, Callable, Hashable

from ..protocol.status import Status
from ..types import Receive, Scope, Send
from .base import peer_string, send_status

__all__ = [
    "ConcurrencyLimitMiddleware",
    "RateLimitMiddleware",
    "by_peer",
    "by_principal",
    "by_method",
    "retry_info",
]

log = logging.getLogger("grpcasgi.middleware.limits")


class ConcurrencyLimitMiddleware:
    """At most ``max_in_flight`` calls inside this layer at once.

    A call arriving when all slots are taken waits up to ``wait_timeout``
    seconds (first come, first served), bounded by its own deadline, then
    ends RESOURCE_EXHAUSTED (DEADLINE_EXCEEDED if the deadline was the
    limit). ``wait_timeout=None`` or 0 rejects at once; ``math.inf`` waits
    as long as the deadline allows. A slot is held until the inner layers
    return, so a streaming call holds it for its whole life.
    """

    def __init__(self, app: Any, *, max_in_flight: int, wait_timeout: float | None = None) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        if wait_timeout is not None and (math.isnan(wait_timeout) or wait_timeout < 0):
            raise ValueError(f"wait_timeout must be None or >= 0, got {wait_timeout!r}")
        self.app = app
        self.max_in_flight = max_in_flight
        self.wait_timeout = wait_timeout or 0.0
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._in_flight < self.max_in_flight and not self._waiters:
            self._in_flight += 1
        else:
            rejection = await self._wait(scope)
            if rejection is not None:
                status, message = rejection
                log.info("%s from %s: %s", scope["path"], peer_string(scope), message)
                await send_status(send, status, message)
                return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait(self, scope: Scope) -> tuple[Status, str] | None:
        """Wait for a slot; None once one is ours, else the status to reject with."""
        timeout = self.wait_timeout
        deadline = scope["deadline"]
        deadline_bound = deadline is not None and deadline.time_remaining() <= timeout
        if deadline is not None and deadline_bound:
            timeout = deadline.time_remaining()
        busy = (Status.RESOURCE_EXHAUSTED, f"Too many concurrent calls (limit {self.max_in_flight})")
        if timeout <= 0:
            return (Status.DEADLINE_EXCEEDED, "Deadline exceeded") if deadline_bound else busy
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), None if math.isinf(timeout) else timeout)
        except asyncio.TimeoutError:
            if self._abandon(waiter):
                return None  # the slot arrived just as the timer fired: keep it
            return (Status.DEADLINE_EXCEEDED, "Deadline exceeded") if deadline_bound else busy
        except BaseException:
            if self._abandon(waiter):
                self._release()
            raise
        return None

    def _abandon(self, waiter: asyncio.Future[None]) -> bool:
        """Stop waiting; True if a slot had already been handed to this waiter."""
        if waiter.done():
            return True
        waiter.cancel()
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        return False

    def _release(self) -> None:
        # Hand the slot straight to the first live waiter, so it cannot be
        # taken by a newcomer in between (first come, first served).
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1


Key = Callable[[Scope], Hashable]


def by_peer(scope: Scope) -> Hashable:
    """The client's host (all connections from one address share a bucket)."""
    addr = scope["peer"].addr()
    host: Hashable = addr[0] if isinstance(addr, tuple) and addr else addr
    return host


def by_principal(state_key: str = "principal") -> Key:
    """The authenticated principal (place after :class:`AuthMiddleware`); peer host as fallback."""

    def key(scope: Scope) -> Hashable:
        principal = scope["state"].get(state_key)
        if principal is None:
            return ("peer", by_peer(scope))
        try:
            hash(principal)
        except TypeError:
            principal = str(principal)
        return ("principal", principal)

    return key


def by_method(scope: Scope) -> Hashable:
    """The full method path: one budget per method, shared by all clients."""
    return scope["path"]


def retry_info(delay: float) -> list[Any] | None:
    """``[google.rpc.RetryInfo(retry_delay=delay)]`` if googleapis-common-protos is installed."""
    try:
        from google.protobuf.duration_pb2 import Duration
        from google.rpc.error_details_pb2 import RetryInfo
    except ImportError:
        return None
    duration = Duration()
    duration.FromNanoseconds(max(0, math.ceil(delay * 1e9)))
    return [RetryInfo(retry_delay=duration)]


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimitMiddleware:
    """Token buckets: ``rate`` calls per second on average, bursts up to ``burst``, per ``key``.

    ``key(scope)`` picks the bucket (default :func:`by_peer`; see
    :func:`by_principal`, :func:`by_method`); a key of None exempts the call.
    A call finding its bucket empty ends RESOURCE_EXHAUSTED with a
    ``RetryInfo`` detail giving the time until a token is available. At most
    ``max_keys`` buckets are kept; the least recently used is dropped first
    (its key starts again with a full bucket).
    """

    def __init__(
        self,
        app: Any,
        *,
        rate: float,
        burst: int,
        key: Key = by_peer,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of calls per second, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a positive integer, got {burst!r}")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.app = app
        self.rate = float(rate)
        self.burst = burst
        self.key = key
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: collections.OrderedDict[Hashable, _Bucket] = collections.OrderedDict()

    def take(self, key: Hashable) -> float:
        """Take a token for ``key``: 0.0 if granted, else seconds until one is available."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket(float(self.burst), now)
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.key(scope)
        if key is not None:
            wait = self.take(key)
            if wait > 0:
                log.info("%s from %s: rate limited (retry in %.3fs)", scope["path"], peer_string(scope), wait)
                await send_status(send, Status.RESOURCE_EXHAUSTED, "Rate limit exceeded", retry_info(wait))
                return
        await self.app(scope, receive, send)
