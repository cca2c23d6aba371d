"""OpenTelemetry metrics for calls, on the server and on the client.

Instruments follow the OpenTelemetry semantic conventions for RPC metrics,
**v1.27.0** (the same version as :mod:`grpcasgi.middleware.tracing`), with
``{side}`` being ``server`` or ``client``:

=================================  ==============  =========  ==============================================
instrument                         kind            unit       recorded
=================================  ==============  =========  ==============================================
``rpc.{side}.duration``            Histogram       ``ms``     once per call, when it ends
``rpc.{side}.request.size``        Histogram       ``By``     per request message (uncompressed size)
``rpc.{side}.response.size``       Histogram       ``By``     per response message (uncompressed size)
``rpc.{side}.requests_per_rpc``    Histogram       ``{count}`` once per call
``rpc.{side}.responses_per_rpc``   Histogram       ``{count}`` once per call
``grpcasgi.{side}.active_calls``   UpDownCounter   ``{call}`` +1 when a call starts, -1 when it ends
=================================  ==============  =========  ==============================================

The last one is not a semantic convention (none exists for in-flight RPCs),
hence its own namespace. Attributes: ``rpc.system="grpc"``, ``rpc.service``,
``rpc.method`` on all of them, plus ``rpc.grpc.status_code`` on those
recorded when the call ends (duration and the per-RPC counts); message sizes
are recorded as messages pass, before the status is known. On the server,
calls to methods no service implements are recorded with ``rpc.service`` and
``rpc.method`` set to ``_OTHER``, so that a client probing random paths
cannot create unbounded numbers of time series. Response sizes are
protobuf's ``ByteSize()`` (messages of other codecs are counted, not sized).

Only ``opentelemetry-api`` is needed, imported when the middleware is
created. ``examples/metrics_prometheus`` exports these to Prometheus.
"""

from __future__ import annotations

from typing import Any, Awaitable

from ..protocol.status import Status
from ..types import App, ClientApp, ClientScope, Receive, Scope, Send
from .base import CallObserver
from .tracing import SCHEMA_URL, INSTRUMENTATION_NAME, require_otel

__all__ = ["ServerMetricsMiddleware", "ClientMetricsMiddleware", "OTHER"]

#: ``rpc.service``/``rpc.method`` value for calls to unknown methods.
OTHER = "_OTHER"

#: Bound on the attribute-set cache (distinct methods); beyond it sets are built per call.
_CACHE_LIMIT = 1024


class _Instruments:
    """The instruments of one side and a cache of their attribute sets."""

    def __init__(self, side: str, meter_provider: Any) -> None:
        require_otel(f"{side.capitalize()}MetricsMiddleware")
        from opentelemetry import metrics

        from .. import __version__

        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        self.duration = meter.create_histogram(
            f"rpc.{side}.duration", unit="ms", description=f"Duration of {_DIRECTION[side]} RPCs."
        )
        self.request_size = meter.create_histogram(
            f"rpc.{side}.request.size", unit="By", description="Size of RPC request messages (uncompressed)."
        )
        self.response_size = meter.create_histogram(
            f"rpc.{side}.response.size", unit="By", description="Size of RPC response messages (uncompressed)."
        )
        self.requests_per_rpc = meter.create_histogram(
            f"rpc.{side}.requests_per_rpc", unit="{count}", description="Request messages per RPC."
        )
        self.responses_per_rpc = meter.create_histogram(
            f"rpc.{side}.responses_per_rpc", unit="{count}", description="Response messages per RPC."
        )
        self.active = meter.create_up_down_counter(
            f"grpcasgi.{side}.active_calls", unit="{call}", description=f"{_DIRECTION[side].capitalize()} RPCs in progress."
        )
        self._cache: dict[tuple[str, str], tuple[dict[str, Any], dict[Status, dict[str, Any]]]] = {}
        # Without an SDK every record is dropped, but observing a call to make
        # them costs more than the rest of the middleware: skip calls while the
        # instruments are no-ops. A NoOpMeter (an explicit no-op provider, or
        # the SDK disabled) stays one. The API's proxy instruments (no global
        # provider set yet) forward to real ones from the moment an SDK
        # provider is set, so for them it is checked per call.
        self._noop = isinstance(meter, metrics.NoOpMeter)
        self._proxy: Any = self.duration if _is_unset_proxy(self.duration) else None

    def recording(self) -> bool:
        """Whether records made now may reach an SDK (False for no-op instruments)."""
        if self._noop:
            return False
        proxy = self._proxy
        if proxy is None:
            return True
        if proxy._real_instrument is None:
            return False
        self._proxy = None  # backed by a real instrument for good
        return True

    def attributes(self, service: str, method: str) -> tuple[dict[str, Any], dict[Status, dict[str, Any]]]:
        """The method's attributes, and its attributes by final status (filled lazily)."""
        key = (service, method)
        entry = self._cache.get(key)
        if entry is None:
            entry = ({"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}, {})
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = entry
        return entry

    async def observe(self, scope: Any, service: str, method: str, app: Any, receive: Receive, send: Send) -> None:
        """Run the call through ``app`` and record it (callers check :meth:`recording` first)."""
        base, by_status = self.attributes(service, method)
        request_size = self.request_size
        response_size = self.response_size

        def on_request(event: Any) -> None:
            request_size.record(event["size"], base)

        def on_response(event: Any) -> None:
            byte_size = getattr(event["message"], "ByteSize", None)
            if byte_size is not None:
                response_size.record(byte_size(), base)

        self.active.add(1, base)
        observer = CallObserver(scope, receive, send, on_request=on_request, on_response=on_response)
        error: BaseException | None = None
        try:
            await app(scope, observer.receive, observer.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.active.add(-1, base)
            outcome = observer.finish(error)
            final = by_status.get(outcome.status)
            if final is None:
                final = by_status[outcome.status] = {**base, "rpc.grpc.status_code": int(outcome.status.value)}
            self.duration.record(outcome.duration_ms, final)
            self.requests_per_rpc.record(outcome.request_messages, final)
            self.responses_per_rpc.record(outcome.response_messages, final)


_DIRECTION = {"server": "inbound", "client": "outbound"}


def _is_unset_proxy(instrument: Any) -> bool:
    """Whether ``instrument`` is the API's proxy, not (yet) backed by an SDK instrument.

    ``_real_instrument`` is the proxy's own attribute (opentelemetry-api
    1.x): an API that changes it makes this False, which only costs the
    no-op fast path, never a record.
    """
    return getattr(instrument, "_real_instrument", _NOT_A_PROXY) is None


_NOT_A_PROXY = object()


class ServerMetricsMiddleware:
    """Record server call metrics (see the module docs)."""

    def __init__(self, app: App, *, meter_provider: Any = None) -> None:
        self.app = app
        self._instruments = _Instruments("server", meter_provider)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: while nothing records, the call passes straight
        # through without a frame of this layer (docs/spec.md, section 1).
        instruments = self._instruments
        if not instruments.recording():
            return self.app(scope, receive, send)
        if scope["handler"] is None:
            service = method = OTHER
        else:
            service, method = scope["service"], scope["method"]
        return instruments.observe(scope, service, method, self.app, receive, send)


class ClientMetricsMiddleware:
    """Record client call metrics (see the module docs). Outside retries: per call; inside: per attempt."""

    def __init__(self, app: ClientApp, *, meter_provider: Any = None) -> None:
        self.app = app
        self._instruments = _Instruments("client", meter_provider)

    def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> Awaitable[None]:
        instruments = self._instruments
        if not instruments.recording():
            return self.app(scope, receive, send)
        return instruments.observe(scope, scope["service"], scope["method"], self.app, receive, send)
