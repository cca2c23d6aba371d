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
    #: Close connections without any call for this long (seconds), with a
    #: GOAWAY first; None: never (grpcio: max_connection_idle unset). The
    #: client closes its idle connection too and reopens it on demand.
    idle_timeout: float | None = None
    #: Server: GOAWAY connections older than this (seconds, +-10 % jitter so a
    #: fleet does not reconnect at once), for load-balancer rebalancing; None: never.
    max_connection_age: float | None = None
    #: Server: after the max-age GOAWAY, calls still running get this long
    #: (seconds) before the connection is closed; None: as long as they need.
    max_connection_age_grace: float | None = None
    #: Send a keepalive PING after this long without receiving anything
    #: (seconds); None: no keepalive (grpcio clients: off; grpcio servers: 2 h).
    keepalive_time: float | None = None
    #: Close the connection when a keepalive PING is not acknowledged in time.
    keepalive_timeout: float = 20.0
    #: Client: send keepalive PINGs also while no call is open (grpcio's
    #: keepalive_permit_without_calls). Off, a client with nothing to say
    #: stays quiet and servers' ping policing never sees it.
    keepalive_permit_without_calls: bool = False
    #: Server ping policing (grpcio's min_recv_ping_interval_without_data):
    #: a PING sooner than this (seconds) after the previous one is a strike,
    #: unless the server sent headers or data in between.
    min_ping_interval: float = 300.0
    #: Strikes tolerated; one more gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
    max_ping_strikes: int = 2
    #: Server: sustained rate of SETTINGS frames tolerated per connection
    #: (bursts of two seconds' worth are absorbed); beyond: GOAWAY ENHANCE_YOUR_CALM.
    http2_max_settings_per_second: float = 10.0
    #: Server: sustained rate per connection of client RST_STREAMs that cancel
    #: a running call (bursts of two seconds' worth are absorbed); beyond it
    #: the connection gets GOAWAY ENHANCE_YOUR_CALM (HTTP/2 "rapid reset").
    http2_max_resets_per_second: float = 500.0
    #: Server: a new connection must send the HTTP/2 preface and its SETTINGS
    #: within this many seconds (slowloris); None: no limit.
    handshake_timeout: float | None = 20.0
    #: Server: a frame or header block (HEADERS + CONTINUATION) that stays
    #: incomplete this long closes the connection (slowloris); None: no limit.
    header_timeout: float | None = 20.0
    #: Limit on simultaneously open connections (server); None: unlimited.
    #: Extra connections get SETTINGS + GOAWAY and are closed.
    max_connections: int | None = None
    #: Seconds in-flight calls get to finish after close() before they are cancelled.
    shutdown_grace: float = 0.0
    #: Client: first wait after a failed connect (gRPC connection backoff:
    #: 1 s, x1.6 per failure, +-20 % jitter, at most 120 s). While it runs,
    #: calls fail UNAVAILABLE at once (or wait, with wait_for_ready).
    reconnect_initial_backoff: float = 1.0
    #: Client: longest wait between connect attempts.
    reconnect_max_backoff: float = 120.0
    #: Client: growth of the wait per failed attempt.
    reconnect_backoff_multiplier: float = 1.6
    #: Client: relative random spread of each wait.
    reconnect_jitter: float = 0.2
    #: Client: time allowed for one TCP (and TLS) connect.
    connect_timeout: float = 20.0
    #: User agent sent by clients.
    user_agent: str | None = None
    #: Client: inherit the current server call's remaining deadline in outgoing calls.
    propagate_deadline: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("user_agent", "propagate_deadline", "keepalive_permit_without_calls"):
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
        if self.http2_max_header_list_size < 1024:
            raise ValueError("Configuration.http2_max_header_list_size must be at least 1024")
        for name in ("http2_max_settings_per_second", "http2_max_resets_per_second", "keepalive_timeout", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Configuration.{name} must be positive")
        for name in ("idle_timeout", "max_connection_age", "keepalive_time", "handshake_timeout", "header_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Configuration.{name} must be positive (or None to disable)")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("Configuration.max_connections must be at least 1 (or None)")
        if self.reconnect_backoff_multiplier < 1:
            raise ValueError("Configuration.reconnect_backoff_multiplier must be at least 1")
        if not 0 <= self.reconnect_jitter < 1:
            raise ValueError("Configuration.reconnect_jitter must be in [0, 1)")
        if self.reconnect_max_backoff < self.reconnect_initial_backoff:
            raise ValueError("Configuration.reconnect_max_backoff must not be below reconnect_initial_backoff")
        if not isinstance(self.keepalive_permit_without_calls, bool):
            raise TypeError("Configuration.keepalive_permit_without_calls must be a bool")

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
        "handshake_timeout",
        "header_timeout",
    }
)
