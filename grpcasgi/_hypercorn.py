"""Guarded patches that make Hypercorn 0.18 behave as a gRPC server must.

Nothing here runs unless Hypercorn's modules are loaded; every patch checks
that the attribute it wraps exists and is installed once. ``grpcasgi.asgi.App``
calls :func:`apply` when it is built and again on its first request.

**Closed streams.** Hypercorn (0.18.0 and earlier; upstream issue
pgjones/hypercorn#329, fixes proposed in PRs #312/#334) forgets a stream as
soon as the application's response is complete. A DATA frame for that stream
arriving afterwards raises ``KeyError`` inside the connection's event loop
and kills the whole connection, failing every other call on it. In gRPC that
is ordinary: a server ends a call (an auth middleware refusing it, a handler
raising, a unary call answered before the request's END_STREAM was
processed) while the client's request frames are still in flight. The
wrapped ``H2Protocol._handle_events`` acknowledges such DATA to flow control
and drops it, exactly what the upstream fix does. It processes events one at
a time through the original method and flushes once at the end (even for an
empty event list, as the original does), so nothing else changes, and it is
a no-op once Hypercorn ships the fix.

**Back-pressure.** Hypercorn's per-stream response buffer is meant to pause
the app's ``send`` above 32 KiB, but it resumed the app whenever the
sender popped a small chunk, including the empty chunk it pops while the
client's flow-control window is closed. A client that stops reading a
server stream thus made the server buffer without bound. The replaced
``StreamBuffer.pop`` resumes the app only once the buffer drained below
the low-water mark, so ``send`` blocks as it should (see :func:`_patch_stream_buffer`).

**Shutdown.** Hypercorn's worker sets ``WorkerContext.terminated`` when it
begins a graceful shutdown (SIGTERM/SIGINT, its ``shutdown_trigger``,
``max_requests``), waits up to ``graceful_timeout`` for connections to end,
cancels what is left, and only *then* runs the ASGI lifespan shutdown. So
without help an app learns about the shutdown after its connections are
gone: a health ``Watch`` never hears NOT_SERVING, and calls that outlive the
grace period are cancelled under Hypercorn (which logs a traceback from the
half-closed task group) with no gRPC status. And Hypercorn refuses requests
on busy connections with RST_STREAM(NO_ERROR), which gRPC clients report as
INTERNAL, while it advertises MAX_CONCURRENT_STREAMS 0, on which clients
queue new calls instead of failing them. With the patches, when
``terminated`` is set:

1. shutdown listeners (:func:`add_shutdown_listener`; ``App`` runs its
   services' ``__on_close__`` hooks, so ``contrib.health`` reports
   NOT_SERVING to open watches) run first, told how long calls have left;
2. Hypercorn's own event is set (idle connections close, as before);
3. every HTTP/2 connection of the worker gets GOAWAY(NO_ERROR) naming the
   last stream it accepted, so clients open new calls elsewhere (as the
   bundled server's ``close()`` does);
4. requests that still arrive are refused with RST_STREAM(REFUSED_STREAM),
   which clients report as UNAVAILABLE and may safely retry.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from typing import Any, Awaitable, Callable

__all__ = ["apply", "add_shutdown_listener", "remove_shutdown_listener", "ShutdownListener"]

log = logging.getLogger("grpcasgi.asgi")

_MARK = "_grpcasgi_patched"

#: ``listener(grace)`` runs when the Hypercorn worker serving this event loop
#: begins its graceful shutdown; ``grace`` is how many seconds calls still
#: have before they should be cancelled, so that their status reaches the
#: client before Hypercorn drops the connection (None: no HTTP/2 connection
#: is open, so no call is running).
ShutdownListener = Callable[[float | None], Awaitable[None]]

#: Of Hypercorn's graceful_timeout, what calls get (the rest lets their
#: cancellation's trailers go out before Hypercorn cancels the connections).
_GRACE_MARGIN_MAX = 1.0
_GRACE_MARGIN_FRACTION = 0.25

_listeners: list[tuple[asyncio.AbstractEventLoop, "weakref.ref[Any] | Callable[[], Any]"]] = []
_protocols: "weakref.WeakSet[Any]" = weakref.WeakSet()


def apply() -> bool:
    """Install the patches Hypercorn's loaded modules still lack.

    True once Hypercorn's HTTP/2 protocol is patched (now or earlier); False
    when Hypercorn is not loaded (the app runs elsewhere, or was built first).
    """
    module = sys.modules.get("hypercorn.protocol.h2")
    protocol_cls: Any = getattr(module, "H2Protocol", None) if module is not None else None
    if protocol_cls is None:
        return False
    _patch_protocol(protocol_cls)
    _patch_stream_buffer(module)
    _patch_worker_context()
    return True


def add_shutdown_listener(listener: ShutdownListener) -> None:
    """Call ``await listener(grace)`` when the Hypercorn worker running the
    current event loop begins its graceful shutdown (once; held weakly when
    ``listener`` is a bound method). Without Hypercorn it never runs."""
    loop = asyncio.get_running_loop()
    ref: "weakref.ref[Any] | Callable[[], Any]"
    if hasattr(listener, "__self__") and hasattr(listener, "__func__"):
        ref = weakref.WeakMethod(listener)
    else:
        ref = lambda: listener  # noqa: E731
    # Entries of finished event loops (an app started under several loops,
    # as in tests) would keep those loops alive.
    _listeners[:] = [(lp, r) for lp, r in _listeners if not lp.is_closed() and r() is not None]
    _listeners.append((loop, ref))


def remove_shutdown_listener(listener: ShutdownListener) -> None:
    """Forget ``listener`` (an app shut down by its lifespan before the worker's shutdown)."""
    _listeners[:] = [(lp, r) for lp, r in _listeners if r() is not None and r() != listener]


# -- the HTTP/2 protocol ------------------------------------------------------------


def _patch_protocol(protocol_cls: Any) -> None:
    if getattr(protocol_cls._handle_events, _MARK, False):
        return
    import h2.errors
    import h2.events
    import h2.exceptions

    original_init = protocol_cls.__init__
    original = protocol_cls._handle_events
    data_received = h2.events.DataReceived
    request_received = h2.events.RequestReceived
    refused = h2.errors.ErrorCodes.REFUSED_STREAM

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _protocols.add(self)  # for the GOAWAY at shutdown

    async def _handle_events(self: Any, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is data_received and event.stream_id not in self.streams:
                # The response already ended; the request's remaining data is unwanted.
                try:
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                except h2.exceptions.ProtocolError:
                    pass
                continue
            if kind is request_received and self.context.terminated.is_set():
                # Never processed, so safe to retry elsewhere: REFUSED_STREAM
                # (UNAVAILABLE), not Hypercorn's NO_ERROR (INTERNAL to gRPC).
                try:
                    self.connection.reset_stream(event.stream_id, error_code=refused)
                except h2.exceptions.ProtocolError:
                    pass
                continue
            await original(self, [event])
        # Always, as the original does: receive_data may have queued frames
        # without producing events (h2 answers DATA on a reset stream itself).
        await self._flush()

    wrapper: Any
    for wrapper, wrapped in ((__init__, original_init), (_handle_events, original)):
        setattr(wrapper, _MARK, True)
        wrapper.__wrapped__ = wrapped
    protocol_cls.__init__ = __init__
    protocol_cls._handle_events = _handle_events
    log.info(
        "grpcasgi: installed the fix for Hypercorn's KeyError on data for closed streams (hypercorn#329) "
        "and REFUSED_STREAM for requests during shutdown"
    )


async def _goaway(proto: Any) -> None:
    """GOAWAY(NO_ERROR, last accepted stream) on one live connection.

    Written past h2: h2's own GOAWAY ends its state machine, after which the
    calls still running could not send another frame. Hypercorn sends h2's
    GOAWAY itself once the connection is idle; that one must not name a
    higher stream (RFC 9113 section 6.8), so it is clamped to ours.
    """
    from hyperframe.frame import GoAwayFrame

    from hypercorn.events import RawData

    conn = proto.connection
    last = int(conn.highest_inbound_stream_id)
    close_connection = conn.close_connection

    def clamped(error_code: int = 0, additional_data: bytes | None = None, last_stream_id: int | None = None) -> None:
        close_connection(error_code, additional_data, last if last_stream_id is None else min(last, last_stream_id))

    conn.close_connection = clamped
    frame = GoAwayFrame(stream_id=0, last_stream_id=last, error_code=0, additional_data=b"shutdown")
    try:
        await proto.send(RawData(data=bytes(frame.serialize())))
    except Exception as exc:  # the connection is already going
        log.debug("grpcasgi: could not send the shutdown GOAWAY: %r", exc)


# -- the response buffer ---------------------------------------------------------------


def _patch_stream_buffer(module: Any) -> None:
    buffer_cls: Any = getattr(module, "StreamBuffer", None)
    low_water = getattr(module, "BUFFER_LOW_WATER", None)
    if buffer_cls is None or low_water is None or getattr(buffer_cls.pop, _MARK, False):
        return
    original = buffer_cls.pop

    async def pop(self: Any, max_length: int) -> bytes:
        """Hypercorn's ``pop``, releasing a paused writer only once the buffer
        has drained under the low-water mark. The original released it when
        the *popped chunk* was small, and the sender pops zero bytes whenever
        the peer's flow-control window is closed: a client that stopped
        reading released the app at every send, and the server buffered
        whatever the app produced (400 MiB in 1.5 s from a streaming
        handler, measured). The same rule is merged in the anycorn fork
        (davidbrochart/anycorn#61)."""
        length = min(len(self.buffer), max_length)
        data = bytes(self.buffer[:length])
        del self.buffer[:length]
        if len(self.buffer) < low_water:
            await self._paused.set()
        if len(self.buffer) == 0:
            await self._is_empty.set()
        return data

    setattr(pop, _MARK, True)
    pop.__wrapped__ = original  # type: ignore[attr-defined]
    buffer_cls.pop = pop
    log.info("grpcasgi: installed the fix for Hypercorn's unbounded response buffer when a client stops reading")


# -- the worker's shutdown --------------------------------------------------------------


def _call_grace(protocols: list[Any]) -> float | None:
    timeouts = [float(p.config.graceful_timeout) for p in protocols if getattr(p, "config", None) is not None]
    if not timeouts:
        return None
    timeout = min(timeouts)
    return max(0.0, timeout - min(_GRACE_MARGIN_MAX, timeout * _GRACE_MARGIN_FRACTION))


async def _shutdown_started(context: Any) -> None:
    """Steps 1 of the module docstring: the listeners of this event loop."""
    loop = asyncio.get_running_loop()
    mine = [entry for entry in _listeners if entry[0] is loop]
    _listeners[:] = [entry for entry in _listeners if entry[0] is not loop]
    live = [p for p in list(_protocols) if p.context is context and not p.closed]
    grace = _call_grace(live)
    log.info(
        "grpcasgi: Hypercorn is shutting down (%d HTTP/2 connections open; calls get %s)",
        len(live),
        "no grace, none running" if grace is None else f"{grace:.1f} s",
    )
    for _, ref in mine:
        listener = ref()
        if listener is None:
            continue
        try:
            await listener(grace)
        except Exception:
            log.exception("grpcasgi: a shutdown listener failed")


def _patch_worker_context() -> None:
    module = sys.modules.get("hypercorn.asyncio.worker_context")
    context_cls: Any = getattr(module, "WorkerContext", None) if module is not None else None
    if context_cls is None or getattr(context_cls.__init__, _MARK, False):
        return
    original_init = context_cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        event = getattr(self, "terminated", None)
        if event is None or not hasattr(event, "set") or not hasattr(event, "is_set"):
            return
        set_event = event.set
        context = self

        async def set_terminated() -> None:
            # Whatever fails here must not stop Hypercorn's own shutdown.
            first = not event.is_set()
            if first:
                try:
                    await _shutdown_started(context)
                except Exception:
                    log.exception("grpcasgi: shutdown notice failed")
            await set_event()
            if first:
                for proto in [p for p in list(_protocols) if p.context is context and not p.closed]:
                    try:
                        await _goaway(proto)
                    except Exception:
                        log.exception("grpcasgi: could not send GOAWAY")

        event.set = set_terminated

    setattr(__init__, _MARK, True)
    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    context_cls.__init__ = __init__
    log.info("grpcasgi: hooked Hypercorn's shutdown (services' __on_close__ run when it begins, GOAWAY to clients)")
