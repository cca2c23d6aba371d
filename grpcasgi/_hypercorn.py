"""A workaround for a Hypercorn HTTP/2 bug that gRPC traffic hits routinely.

Hypercorn (0.18.0 and earlier; upstream issue pgjones/hypercorn#329, fixes
proposed in PRs #312/#334) forgets a stream as soon as the application's
response is complete. A DATA frame for that stream arriving afterwards raises
``KeyError`` inside the connection's event loop and kills the whole
connection, failing every other call on it. In gRPC that is ordinary: a
server ends a call (an auth middleware refusing it, a handler raising, a
unary call answered before the request's END_STREAM was processed) while the
client's request frames are still in flight.

:func:`apply` wraps ``H2Protocol._handle_events`` so that DATA for a stream
Hypercorn no longer tracks is acknowledged to flow control and dropped,
exactly what the upstream fix does. The wrapper processes events one at a
time through the original method and flushes once at the end (even for an
empty event list, as the original does), so nothing else changes, and it is
a no-op once Hypercorn ships the fix. ``grpcasgi.asgi.App`` applies it when
it finds itself running under Hypercorn.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["apply"]

log = logging.getLogger("grpcasgi.asgi")

_MARK = "_grpcasgi_closed_stream_data_fix"


def apply() -> bool:
    """Install the fix if Hypercorn's HTTP/2 protocol is loaded; True if it was installed now."""
    module = sys.modules.get("hypercorn.protocol.h2")
    if module is None:
        return False
    protocol_cls: Any = getattr(module, "H2Protocol", None)
    if protocol_cls is None or getattr(protocol_cls._handle_events, _MARK, False):
        return False
    import h2.events
    import h2.exceptions

    original = protocol_cls._handle_events
    data_received = h2.events.DataReceived

    async def _handle_events(self: Any, events: list[Any]) -> None:
        for event in events:
            if type(event) is data_received and event.stream_id not in self.streams:
                # The response already ended; the request's remaining data is unwanted.
                try:
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                except h2.exceptions.ProtocolError:
                    pass
                continue
            await original(self, [event])
        # Always, as the original does: receive_data may have queued frames
        # without producing events (h2 answers DATA on a reset stream itself).
        await self._flush()

    setattr(_handle_events, _MARK, True)
    _handle_events.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(protocol_cls, "_handle_events", _handle_events)
    log.info("grpcasgi: installed the fix for Hypercorn's KeyError on data for closed streams (hypercorn#329)")
    return True
