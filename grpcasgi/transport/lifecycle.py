"""Timing of a connection's life: handshake and stall timeouts, keepalive,
idle and age limits, the graceful two-step GOAWAY, and ping/flood policing.

The protocol classes stay about moving frames; they call into one of these
objects at a few points (connection made, data received, a PING or SETTINGS
frame, a stream reset, a call finished) and it calls back when a limit is
reached. Activity is stamped, not timed: a read costs one clock lookup, and
each timer re-arms itself for the time that is actually left when it fires,
so a busy connection never reschedules a timer per frame.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Callable

import hyperframe.frame

from ..call import CancelReason
from ..config import Configuration
from .guard import PingPolicy, RateBudget

if TYPE_CHECKING:
    from .h2client import H2ClientProtocol
    from .h2server import H2ServerProtocol

__all__ = ["ServerLifecycle", "ClientLifecycle", "KEEPALIVE_PING", "DRAIN_PING", "DRAIN_PING_TIMEOUT", "goaway_frame"]

log = logging.getLogger("grpcasgi.server")
client_log = logging.getLogger("grpcasgi.client")

#: Opaque data of our keepalive PINGs and of the shutdown PING between the two GOAWAYs.
KEEPALIVE_PING = b"grpcaska"
DRAIN_PING = b"grpcasdr"
#: How long the server waits for the ACK of the shutdown PING before it sends
#: the final GOAWAY anyway (the ACK proves the client saw the first GOAWAY).
DRAIN_PING_TIMEOUT = 2.0
#: A connection told to go away is aborted if it has not closed this long after.
CLOSE_LINGER = 2.0

_MAX_STREAM_ID = 2**31 - 1
_BURST_SECONDS = 2.0


def goaway_frame(last_stream_id: int, code: int = 0, debug: bytes = b"") -> bytes:
    """A serialized GOAWAY frame (written past ``h2``, whose own GOAWAY ends its state machine)."""
    frame = hyperframe.frame.GoAwayFrame(
        stream_id=0, last_stream_id=last_stream_id, error_code=code, additional_data=debug
    )
    return bytes(frame.serialize())


class _Timers:
    """Named one-shot timers; a timer fires only while the connection is open."""

    __slots__ = ("loop", "alive", "_handles")

    def __init__(self, loop: asyncio.AbstractEventLoop, alive: Callable[[], bool]) -> None:
        self.loop = loop
        self.alive = alive
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def arm(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        old = self._handles.pop(name, None)
        if old is not None:
            old.cancel()
        self._handles[name] = self.loop.call_later(max(0.0, delay), self._fire, name, callback)

    def armed(self, name: str) -> bool:
        return name in self._handles

    def cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _fire(self, name: str, callback: Callable[[], None]) -> None:
        self._handles.pop(name, None)
        if self.alive():
            callback()


class ServerLifecycle:
    """Limits of one server connection (see ``docs/operations.md``)."""

    __slots__ = (
        "proto",
        "config",
        "loop",
        "timers",
        "last_received",
        "idle_since",
        "handshaken",
        "partial_since",
        "draining",
        "final_sent",
        "pings",
        "settings_budget",
        "reset_budget",
        "_keepalive_pending",
    )

    def __init__(self, proto: "H2ServerProtocol", config: Configuration) -> None:
        self.proto = proto
        self.config = config
        self.loop = proto.loop
        self.timers = _Timers(proto.loop, lambda: proto.transport is not None)
        now = self.loop.time()
        self.last_received = now
        self.idle_since = now
        self.handshaken = False
        self.partial_since: float | None = None
        self.draining = False  # the first GOAWAY went out
        self.final_sent = False  # the GOAWAY with the real last stream id went out
        self.pings = PingPolicy(config.min_ping_interval, config.max_ping_strikes)
        rate = config.http2_max_settings_per_second
        self.settings_budget = RateBudget(rate, max(rate * _BURST_SECONDS, 5.0))
        rate = config.http2_max_resets_per_second
        self.reset_budget = RateBudget(rate, max(rate * _BURST_SECONDS, 10.0))
        self._keepalive_pending = False

    def start(self) -> None:
        cfg = self.config
        if cfg.handshake_timeout is not None:
            self.timers.arm("handshake", cfg.handshake_timeout, self._handshake_expired)
        if cfg.idle_timeout is not None:
            self.timers.arm("idle", cfg.idle_timeout, self._check_idle)
        if cfg.max_connection_age is not None:
            # +-10 % so that connections opened together do not all go away together.
            self.timers.arm("age", cfg.max_connection_age * random.uniform(0.9, 1.1), self._aged)
        if cfg.keepalive_time is not None:
            self.timers.arm("keepalive", cfg.keepalive_time, self._check_keepalive)

    def stop(self) -> None:
        self.timers.cancel_all()

    # -- hooks called by the protocol ---------------------------------------

    def received(self, progressed: bool) -> None:
        """After each read; ``progressed``: at least one frame completed."""
        now = self.last_received = self.loop.time()
        timeout = self.config.header_timeout
        if timeout is None:
            return
        if self.proto.conn.incoming_buffer.pending:
            if progressed or self.partial_since is None:
                self.partial_since = now
            if not self.timers.armed("stall"):
                self.timers.arm("stall", timeout, self._check_stall)
        else:
            self.partial_since = None

    def settings_received(self) -> bool:
        """A SETTINGS frame arrived; False when the peer floods them."""
        if not self.handshaken:
            self.handshaken = True
            self.timers.cancel("handshake")
        return self.settings_budget.spend(self.loop.time())

    def ping_received(self) -> bool:
        """A PING arrived; False when it is one strike too many."""
        return self.pings.received(self.loop.time())

    def ping_acked(self, data: bytes) -> None:
        if data == KEEPALIVE_PING:
            self._keepalive_pending = False
            self.timers.cancel("keepalive_ack")
        elif data == DRAIN_PING:
            self.final_goaway()

    def call_reset(self) -> bool:
        """The client reset a running call; False beyond the reset budget."""
        return self.reset_budget.spend(self.loop.time())

    def calls_ended(self) -> None:
        """The last running call of the connection ended."""
        self.idle_since = self.loop.time()

    # -- graceful GOAWAY ------------------------------------------------------

    def drain(self, reason: str, *, refuse_now: bool = False) -> None:
        """The two-step GOAWAY: stop the client opening streams, without losing one.

        First GOAWAY with the largest stream id (streams the client opens
        meanwhile are still served) and a PING; the PING's ACK proves the
        client has seen the GOAWAY, so a second GOAWAY then names the last
        stream really processed (after :data:`DRAIN_PING_TIMEOUT` without an
        ACK it goes out anyway). From then on new streams are refused with
        REFUSED_STREAM, which clients retry elsewhere, and the connection
        closes once its calls have ended. ``refuse_now`` refuses new streams
        at once (a shutdown without grace: they could not finish anyway).
        """
        proto = self.proto
        if refuse_now:
            proto.refusing = True
        if self.draining or proto.transport is None:
            return
        self.draining = True
        self.timers.cancel("idle")
        proto.write_raw(goaway_frame(_MAX_STREAM_ID, 0, reason.encode("ascii", "replace")))
        try:
            proto.conn.ping(DRAIN_PING)
        except Exception:  # h2 already closed: go straight to the end
            self.final_goaway()
            return
        proto.flush()
        self.timers.arm("drain", DRAIN_PING_TIMEOUT, self.final_goaway)

    def final_goaway(self) -> None:
        proto = self.proto
        if self.final_sent or proto.transport is None:
            return
        self.final_sent = True
        self.timers.cancel("drain")
        proto.write_raw(goaway_frame(proto.conn.highest_inbound_stream_id))
        proto.refusing = True
        proto.close_when_done()

    # -- timers ---------------------------------------------------------------------

    def _handshake_expired(self) -> None:
        if not self.handshaken:
            self.proto.give_up(f"no HTTP/2 preface and SETTINGS within {self.config.handshake_timeout} s")

    def _check_stall(self) -> None:
        since = self.partial_since
        timeout = self.config.header_timeout
        if since is None or timeout is None:
            return
        left = since + timeout - self.loop.time()
        if left > 0:
            self.timers.arm("stall", left, self._check_stall)
            return
        self.proto.give_up(f"a frame or header block stayed incomplete for {timeout} s")

    def _check_idle(self) -> None:
        timeout = self.config.idle_timeout
        if timeout is None or self.draining:
            return
        if self.proto.calls:
            self.timers.arm("idle", timeout, self._check_idle)
            return
        left = self.idle_since + timeout - self.loop.time()
        if left > 0:
            self.timers.arm("idle", left, self._check_idle)
            return
        log.info("%r: no call for %s s (idle_timeout); GOAWAY", self.proto.peer, timeout)
        self.drain("idle")

    def _aged(self) -> None:
        log.info("%r: max_connection_age reached; GOAWAY", self.proto.peer)
        self.drain("max_age")
        grace = self.config.max_connection_age_grace
        if grace is not None:
            self.timers.arm("age_grace", grace, self._age_grace_over)

    def _age_grace_over(self) -> None:
        proto = self.proto
        if proto.calls:
            log.info("%r: max_connection_age_grace over; cancelling %d call(s)", proto.peer, len(proto.calls))
        self.final_goaway()
        proto.cancel_calls(CancelReason.SHUTDOWN)

    def _check_keepalive(self) -> None:
        interval = self.config.keepalive_time
        if interval is None:
            return
        left = self.last_received + interval - self.loop.time()
        if self._keepalive_pending or left > 0:
            self.timers.arm("keepalive", interval if self._keepalive_pending else left, self._check_keepalive)
            return
        self._keepalive_pending = True
        self.proto.conn.ping(KEEPALIVE_PING)
        self.proto.flush()
        self.timers.arm("keepalive_ack", self.config.keepalive_timeout, self._keepalive_expired)
        self.timers.arm("keepalive", interval, self._check_keepalive)

    def _keepalive_expired(self) -> None:
        self.proto.give_up(f"keepalive PING not acknowledged within {self.config.keepalive_timeout} s")


class ClientLifecycle:
    """Keepalive and idle closing of one client connection.

    Keepalive PINGs go out only while calls are open unless
    ``keepalive_permit_without_calls``; an unacknowledged one fails every
    open call UNAVAILABLE at once (a dead peer or path otherwise leaves
    calls without a deadline hanging forever). ``idle_timeout`` closes a
    connection without calls; the channel reopens one on demand.
    """

    __slots__ = ("proto", "config", "loop", "timers", "last_received", "idle_since", "_keepalive_pending")

    def __init__(self, proto: "H2ClientProtocol", config: Configuration) -> None:
        self.proto = proto
        self.config = config
        self.loop = proto.loop
        self.timers = _Timers(proto.loop, lambda: proto.transport is not None)
        now = self.loop.time()
        self.last_received = now
        self.idle_since = now
        self._keepalive_pending = False

    def start(self) -> None:
        cfg = self.config
        if cfg.keepalive_time is not None:
            self.timers.arm("keepalive", cfg.keepalive_time, self._check_keepalive)
        if cfg.idle_timeout is not None:
            self.timers.arm("idle", cfg.idle_timeout, self._check_idle)

    def stop(self) -> None:
        self.timers.cancel_all()

    def received(self) -> None:
        self.last_received = self.loop.time()

    def calls_ended(self) -> None:
        self.idle_since = self.loop.time()

    def ping_acked(self, data: bytes) -> None:
        if data == KEEPALIVE_PING:
            self._keepalive_pending = False
            self.timers.cancel("keepalive_ack")

    def _check_keepalive(self) -> None:
        interval = self.config.keepalive_time
        if interval is None:
            return
        proto = self.proto
        left = self.last_received + interval - self.loop.time()
        wanted = bool(proto.streams) or self.config.keepalive_permit_without_calls
        if left > 0 or self._keepalive_pending or not wanted:
            self.timers.arm("keepalive", left if left > 0 else interval, self._check_keepalive)
            return
        self._keepalive_pending = True
        try:
            proto.conn.ping(KEEPALIVE_PING)
        except Exception:
            return  # h2 is closed: the connection is going anyway
        proto.flush()
        self.timers.arm("keepalive_ack", self.config.keepalive_timeout, self._keepalive_expired)
        self.timers.arm("keepalive", interval, self._check_keepalive)

    def _keepalive_expired(self) -> None:
        client_log.warning(
            "keepalive PING to %r not acknowledged within %s s; closing the connection",
            self.proto.peer,
            self.config.keepalive_timeout,
        )
        self.proto.abort(f"keepalive PING not acknowledged within {self.config.keepalive_timeout} s")

    def _check_idle(self) -> None:
        timeout = self.config.idle_timeout
        if timeout is None:
            return
        proto = self.proto
        if proto.streams:
            self.timers.arm("idle", timeout, self._check_idle)
            return
        left = self.idle_since + timeout - self.loop.time()
        if left > 0:
            self.timers.arm("idle", left, self._check_idle)
            return
        client_log.debug("closing idle connection to %r after %s s", proto.peer, timeout)
        proto.close()

