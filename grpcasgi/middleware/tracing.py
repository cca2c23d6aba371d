"""OpenTelemetry tracing: one span per call, on the server and on the client.

Follows the OpenTelemetry semantic conventions for RPC, **v1.27.0** (the
experimental RPC conventions that the Python gRPC instrumentations also
emit; later versions renamed attributes, e.g. ``rpc.system.name``):

* span name ``{rpc.service}/{rpc.method}`` (``package.Service/Method``), kind
  ``SERVER`` or ``CLIENT``;
* attributes ``rpc.system="grpc"``, ``rpc.service``, ``rpc.method``,
  ``rpc.grpc.status_code`` (the numeric status), ``server.address`` /
  ``server.port`` (from the ``:authority``), ``network.peer.address`` /
  ``network.peer.port`` (the other end of the connection);
* span status: on the client every non-OK status is an error; on the server
  only UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and
  DATA_LOSS are (the others describe the client's request, not a server
  fault) and the status stays unset otherwise. An exception escaping the
  handler is also recorded as a span event;
* with ``message_events=True``, one ``message`` event per message
  (``message.type`` SENT/RECEIVED, ``message.id``,
  ``message.uncompressed_size``).

Context propagation uses the global propagator (W3C ``traceparent`` /
``tracestate`` and ``baggage`` by default) or the one passed in: the server
extracts the caller's context from the request metadata, and its span is the
*current* span while the handler runs, so calls the handler makes through a
channel with :class:`ClientTracingMiddleware` become its children; the client
injects its span's context into the outgoing metadata.

Only ``opentelemetry-api`` is needed (``pip install grpcasgi[otel]``), and it
is imported when a middleware is created, never when this module is. Without
an SDK (or for calls sampled out) spans do not record: the middleware then
only propagates the context and skips observing the call.
Place the client middleware outside :class:`RetryMiddleware` for one span per
call, inside it for one span per attempt.
"""

from __future__ import annotations

from typing import Any, Awaitable

from ..const import Status
from ..types import App, ClientApp, ClientScope, Receive, Scope, Send
from .base import CallObserver, CallOutcome, Ending

__all__ = ["ServerTracingMiddleware", "ClientTracingMiddleware", "SEMCONV_VERSION"]

#: The version of the OpenTelemetry semantic conventions these spans follow.
SEMCONV_VERSION = "1.27.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
INSTRUMENTATION_NAME = "grpcasgi"

#: Statuses that mark a *server* span as an error (semconv, gRPC spans).
SERVER_ERROR_STATUSES = frozenset(
    {
        Status.UNKNOWN,
        Status.DEADLINE_EXCEEDED,
        Status.UNIMPLEMENTED,
        Status.INTERNAL,
        Status.UNAVAILABLE,
        Status.DATA_LOSS,
    }
)


def require_otel(feature: str) -> None:
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"{feature} needs the OpenTelemetry API: pip install 'grpcasgi[otel]' (opentelemetry-api)"
        ) from None


class _MetadataGetter:
    """Reads propagation headers from a metadata ``MultiDict`` (text values only)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        values = carrier.getall(key, None)  # usually absent: no list built then
        if values is None:
            return None
        values = [v for v in values if isinstance(v, str)]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier.keys())


class _MetadataSetter:
    def set(self, carrier: Any, key: str, value: str) -> None:
        carrier[key] = value  # replaces: one traceparent per call


_GETTER = _MetadataGetter()
_SETTER = _MetadataSetter()


def split_authority(authority: str | None) -> tuple[str | None, int | None]:
    """``host:port`` / ``[v6]:port`` / ``host`` → (host, port)."""
    if not authority:
        return None, None
    host, sep, port = authority.rpartition(":")
    if not sep or "]" in port:
        return authority.strip("[]"), None
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return authority, None


def peer_attributes(addr: Any) -> dict[str, Any]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return {"network.peer.address": str(addr[0]), "network.peer.port": int(addr[1])}
    if isinstance(addr, str) and addr:
        return {"network.peer.address": addr}
    return {}


def call_attributes(service: str, method: str, authority: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    host, port = split_authority(authority)
    if host:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    return attributes


def _message_events(span: Any) -> tuple[Any, Any]:
    """Observer callbacks adding semconv ``message`` events to ``span``."""
    counters = {"RECEIVED": 0, "SENT": 0}

    def event(kind: str, size: int | None) -> None:
        counters[kind] += 1
        attributes: dict[str, Any] = {"message.type": kind, "message.id": counters[kind]}
        if size is not None:
            attributes["message.uncompressed_size"] = size
        span.add_event("message", attributes)

    return event, counters


def _reply_size(message: Any) -> int | None:
    byte_size = getattr(message, "ByteSize", None)
    try:
        return int(byte_size()) if byte_size is not None else None
    except Exception:
        return None


def _w3c_fields(textmap: Any) -> tuple[str, ...] | None:
    """The headers ``textmap`` reads if it consists of W3C trace-context/baggage propagators only."""
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parts = getattr(textmap, "_propagators", None) if isinstance(textmap, CompositePropagator) else [textmap]
    if parts is None:
        return None
    fields: list[str] = []
    for part in parts:
        if type(part) not in (TraceContextTextMapPropagator, W3CBaggagePropagator):
            return None
        fields.extend(part.fields)
    return tuple(dict.fromkeys(fields))


class _Tracing:
    """What both middleware share: the tracer, the propagator, ending a span."""

    def __init__(self, tracer_provider: Any, propagator: Any, message_events: bool) -> None:
        require_otel(type(self).__name__)
        from opentelemetry import context, propagate, trace

        from .. import __version__

        self._trace = trace
        self._context = context
        self._propagate = propagate
        self.tracer: Any = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider, schema_url=SCHEMA_URL
        )
        self.propagator = propagator
        self.message_events = message_events
        # Without an SDK spans record nothing, and their attributes, the
        # proxy's indirections and observing the call would be wasted: see
        # noop_tracer(). A NoOpTracer (an explicit no-op provider) stays one;
        # the API's ProxyTracer (no global provider yet) forwards to the SDK's
        # tracer from the moment one is set, so it is asked per call.
        self._noop: Any = self.tracer if isinstance(self.tracer, trace.NoOpTracer) else None
        self._proxy = isinstance(self.tracer, trace.ProxyTracer) and hasattr(type(self.tracer), "_tracer")
        #: (textmap, the header names it reads if it is W3C-only, else None)
        self._w3c_fields: tuple[Any, tuple[str, ...] | None] | None = None

    def noop_tracer(self) -> Any:
        """The no-op tracer spans started now come from, or None if they may record.

        A ProxyTracer resolves its delegate (``_tracer``, opentelemetry-api
        1.x) in every ``start_span``; reading it here is the same lookup, done
        once per call. Were that property gone, ``_proxy`` is False and every
        call takes the general path.
        """
        if self._noop is not None:
            return self._noop
        if self._proxy:
            delegate = self.tracer._tracer
            if isinstance(delegate, self._trace.NoOpTracer):
                return delegate
            self._proxy = False  # a provider was set: the proxy forwards to it for good
        return None

    def nothing_to_propagate(self, textmap: Any, metadata: Any) -> bool:
        """Whether extracting ``textmap`` from ``metadata`` is known to yield an empty context.

        True when ``textmap`` is made only of the W3C propagators (trace
        context and baggage: the default), whose extraction reads nothing but
        their ``fields`` and returns an empty context when those headers are
        absent. Another propagator may read more than it declares (Jaeger's
        reads every ``uberctx-*`` key), so it is always asked.
        """
        cached = self._w3c_fields
        if cached is None or cached[0] is not textmap:
            cached = self._w3c_fields = (textmap, _w3c_fields(textmap))
        fields = cached[1]
        if fields is None:
            return False
        for name in fields:
            if name in metadata:
                return False
        return True

    def textmap(self) -> Any:
        # Looked up per call so that configuring propagators after the
        # middleware was built (common in app start-up code) still applies.
        return self.propagator if self.propagator is not None else self._propagate.get_global_textmap()

    def end_span(self, span: Any, outcome: CallOutcome, error_statuses: frozenset[Status] | None) -> None:
        trace = self._trace
        status = outcome.status
        span.set_attribute("rpc.grpc.status_code", int(status.value))
        error = outcome.error
        if outcome.ending is Ending.EXCEPTION and error is not None:
            span.record_exception(error)
        if status is not Status.OK and (error_statuses is None or status in error_statuses):
            description = f"{status.name}: {outcome.message}" if outcome.message else status.name
            span.set_status(trace.Status(trace.StatusCode.ERROR, description))
        span.end()


class ServerTracingMiddleware:
    """A SERVER span per call, child of the caller's propagated context."""

    def __init__(
        self,
        app: App,
        *,
        tracer_provider: Any = None,
        propagator: Any = None,
        message_events: bool = False,
    ) -> None:
        self.app = app
        self._tracing = _Tracing(tracer_provider, propagator, message_events)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        tracing = self._tracing
        noop = tracing.noop_tracer()
        textmap = tracing.textmap()
        if (
            noop is not None
            and tracing.nothing_to_propagate(textmap, scope["metadata"])
            and not tracing._context.get_current()
        ):
            # No SDK, no caller context and none around: the context the
            # handler would run in is empty either way (an invalid span), and
            # the call passes through without a frame of this layer.
            return self.app(scope, receive, send)
        return self._traced(scope, receive, send, noop, textmap)

    async def _traced(self, scope: Scope, receive: Receive, send: Send, noop: Any, textmap: Any) -> None:
        tracing = self._tracing
        trace = tracing._trace
        parent = textmap.extract(scope["metadata"], getter=_GETTER)
        if noop is not None:
            # No SDK: the span is the caller's (or the invalid span), which is
            # all the handler and its outgoing calls need for propagation.
            span = noop.start_span("", context=parent, kind=trace.SpanKind.SERVER)
            token = tracing._context.attach(trace.set_span_in_context(span, parent))
            try:
                await self.app(scope, receive, send)
            finally:
                tracing._context.detach(token)
            return
        attributes = call_attributes(scope["service"], scope["method"], scope["authority"])
        attributes.update(peer_attributes(scope["peer"].addr()))
        span = tracing.tracer.start_span(
            f"{scope['service']}/{scope['method']}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        )
        token = tracing._context.attach(trace.set_span_in_context(span, parent))
        if not span.is_recording():  # no SDK, or sampled out: only the context matters
            try:
                await self.app(scope, receive, send)
            finally:
                tracing._context.detach(token)
            return
        on_request = on_response = None
        if tracing.message_events:
            event, _ = _message_events(span)

            def on_request(ev: Any) -> None:
                event("RECEIVED", ev["size"])

            def on_response(ev: Any) -> None:
                event("SENT", _reply_size(ev["message"]))

        observer = CallObserver(scope, receive, send, on_request=on_request, on_response=on_response)
        error: BaseException | None = None
        try:
            await self.app(scope, observer.receive, observer.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                tracing.end_span(span, observer.finish(error), SERVER_ERROR_STATUSES)
            finally:
                tracing._context.detach(token)


class ClientTracingMiddleware:
    """A CLIENT span per call (or per attempt, inside retries), injected into the metadata."""

    def __init__(
        self,
        app: ClientApp,
        *,
        tracer_provider: Any = None,
        propagator: Any = None,
        message_events: bool = False,
    ) -> None:
        self.app = app
        self._tracing = _Tracing(tracer_provider, propagator, message_events)

    async def __call__(self, scope: ClientScope, receive: Receive, send: Send) -> None:
        tracing = self._tracing
        trace = tracing._trace
        noop = tracing.noop_tracer()
        if noop is not None:
            # No SDK: the current span (if any) is passed on, as the proxy would.
            span = noop.start_span("", kind=trace.SpanKind.CLIENT)
            ctx = trace.set_span_in_context(span)
            tracing.textmap().inject(scope["metadata"], context=ctx, setter=_SETTER)
            token = tracing._context.attach(ctx)
            try:
                await self.app(scope, receive, send)
            finally:
                tracing._context.detach(token)
            return
        span = tracing.tracer.start_span(
            f"{scope['service']}/{scope['method']}",
            kind=trace.SpanKind.CLIENT,
            attributes=call_attributes(scope["service"], scope["method"], scope["authority"]),
        )
        ctx = trace.set_span_in_context(span)
        tracing.textmap().inject(scope["metadata"], context=ctx, setter=_SETTER)
        token = tracing._context.attach(ctx)
        if not span.is_recording():  # no SDK, or sampled out: only the propagation matters
            try:
                await self.app(scope, receive, send)
            finally:
                tracing._context.detach(token)
            return
        on_request = on_response = None
        if tracing.message_events:
            event, _ = _message_events(span)

            def on_request(ev: Any) -> None:
                event("SENT", ev["size"])

            def on_response(ev: Any) -> None:
                event("RECEIVED", _reply_size(ev["message"]))

        observer = CallObserver(_as_scope(scope), receive, send, on_request=on_request, on_response=on_response)
        error: BaseException | None = None
        try:
            await self.app(scope, observer.receive, observer.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                peer = scope["extensions"].get("peer")
                if peer is not None:
                    span.set_attributes(peer_attributes(peer.addr()))
                tracing.end_span(span, observer.finish(error), None)
            finally:
                tracing._context.detach(token)


def _as_scope(scope: ClientScope) -> Scope:
    # CallObserver reads only "path" and "extensions", which both scopes have.
    return scope  # type: ignore[return-value]

