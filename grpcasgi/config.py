"""Configuration: every limit and HTTP/2 setting in one validated, frozen object.

Defaults follow grpcio where it has one (4 MiB receive limit, no send limit,
keepalive policy) so that a service moved from grpcio behaves the same.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Configuration"]

_MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True)
class Configuration:
    #: Largest message accepted, before and after decompression (grpcio: 4 MiB).
    max_receive_message_length: int = 4 * 1024 * 1024
    #: Largest message sent; None means unlimited (as grpcio).
    max_send_message_length: int | None = None
    #: SETTINGS_MAX_CONCURRENT_STREAMS advertised by the server.
    http2_max_concurrent_streams: int = 1000
    #: Initial flow-control window of each stream we receive on.
    http2_stream_window_size: int = 4 * 1024 * 1024
    #: Flow-control window of the whole connection we receive on.
    http2_connection_window_size: int = 4 * 1024 * 1024
    #: SETTINGS_MAX_FRAME_SIZE advertised (the largest DATA frame the peer may send).
    http2_max_frame_size: int = 16384
    #: SETTINGS_MAX_HEADER_LIST_SIZE advertised and enforced.
    http2_max_header_list_size: int = 16 * 1024
    #: Close connections without any call for this long (seconds); None: never.
    idle_timeout: float | None = None
    #: GOAWAY connections older than this (seconds), for rebalancing; None: never.
    max_connection_age: float | None = None
    #: Grace period for in-flight calls after max_connection_age (seconds).
    max_connection_age_grace: float | None = None
    #: Send a PING after this long without activity (seconds); None: no keepalive.
    keepalive_time: float | None = None
    #: Close the connection when a keepalive PING is not acknowledged in time.
    keepalive_timeout: float = 20.0
    #: Minimum interval between PINGs accepted from a peer (seconds) before
    #: GOAWAY ENHANCE_YOUR_CALM (grpcio: 5 minutes without calls, we count pings per window).
    min_ping_interval: float = 10.0
    #: Pings without data tolerated before the policy above applies.
    max_ping_strikes: int = 2
    #: Limit on simultaneously open connections (server); None: unlimited.
    max_connections: int | None = None
    #: Seconds in-flight calls get to finish after close() before they are cancelled.
    shutdown_grace: float = 0.0
    #: User agent sent by clients.
    user_agent: str | None = None
    #: Client: inherit the current server call's remaining deadline in outgoing calls.
    propagate_deadline: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("user_agent", "propagate_deadline"):
                continue
            if value is None:
                if f.name in _OPTIONAL:
                    continue
                raise ValueError(f"Configuration.{f.name} may not be None")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Configuration.{f.name} must be a number, got {value!r}")
            if value < 0:
                raise ValueError(f"Configuration.{f.name} must not be negative, got {value!r}")
        if self.max_receive_message_length <= 0:
            raise ValueError("Configuration.max_receive_message_length must be positive")
        for name in ("http2_stream_window_size", "http2_connection_window_size"):
            value = getattr(self, name)
            if not 65535 <= value <= _MAX_WINDOW:
                raise ValueError(f"Configuration.{name} must be between 65535 and {_MAX_WINDOW}")
        if not 16384 <= self.http2_max_frame_size <= 16777215:
            raise ValueError("Configuration.http2_max_frame_size must be between 16384 and 16777215")
        if self.http2_max_concurrent_streams < 1:
            raise ValueError("Configuration.http2_max_concurrent_streams must be at least 1")

    def replace(self, **changes: Any) -> "Configuration":
        from dataclasses import replace

        return replace(self, **changes)


_OPTIONAL = frozenset(
    {
        "max_send_message_length",
        "idle_timeout",
        "max_connection_age",
        "max_connection_age_grace",
        "keepalive_time",
        "max_connections",
    }
)
