"""Server and client middleware built only on the call contract of ``docs/spec.md``.

Each built-in lives in its own module and can be read as an example of
writing middleware; ``base`` has the tools they share (:class:`CallObserver`
to learn how a call ended, :func:`send_status` to reject one) and
``selector`` applies any middleware to some methods only. See
``docs/middleware.md``.

The client middleware (retries, call credentials) and the OpenTelemetry
ones (tracing, metrics) are imported on first use (PEP 562): a server that
uses none of them does not load the client modules, and importing this
package never imports ``opentelemetry`` (the OpenTelemetry middleware import
it when they are created).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..call import CancelReason, Middleware, cancel_reason
from .auth import (
    APIKeyScheme,
    AuthenticationError,
    AuthMiddleware,
    AuthScheme,
    BearerTokenScheme,
    CertificatePrincipal,
    MTLSScheme,
    current_principal,
)
from .base import CallObserver, CallOutcome, Ending, peer_string, send_status
from .deadlines import DeadlineMiddleware
from .limits import ConcurrencyLimitMiddleware, RateLimitMiddleware, by_method, by_peer, by_principal
from .logging import LoggingMiddleware
from .recovery import DEFAULT_MAPPING, ErrorMappingMiddleware, generic_message
from .selector import SYSTEM_SERVICES, Selector, matches, select
from .validation import FieldViolation, ValidationError, ValidationMiddleware

if TYPE_CHECKING:
    from .credentials import ApiKeyCredentialsMiddleware, CallCredentialsMiddleware
    from .metrics import ClientMetricsMiddleware, ServerMetricsMiddleware
    from .retry import RetryMiddleware, RetryThrottle
    from .tracing import ClientTracingMiddleware, ServerTracingMiddleware

#: Names imported from their module when first looked up.
_LAZY = {
    "RetryMiddleware": "retry",
    "RetryThrottle": "retry",
    "CallCredentialsMiddleware": "credentials",
    "ApiKeyCredentialsMiddleware": "credentials",
    "ServerTracingMiddleware": "tracing",
    "ClientTracingMiddleware": "tracing",
    "ServerMetricsMiddleware": "metrics",
    "ClientMetricsMiddleware": "metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    # composition
    "Middleware",
    "Selector",
    "select",
    "matches",
    "SYSTEM_SERVICES",
    # observing calls
    "CallObserver",
    "CallOutcome",
    "Ending",
    "CancelReason",
    "cancel_reason",
    "send_status",
    "peer_string",
    # auth
    "AuthMiddleware",
    "AuthScheme",
    "AuthenticationError",
    "BearerTokenScheme",
    "APIKeyScheme",
    "MTLSScheme",
    "CertificatePrincipal",
    "current_principal",
    # deadlines
    "DeadlineMiddleware",
    # logging
    "LoggingMiddleware",
    # errors
    "ErrorMappingMiddleware",
    "DEFAULT_MAPPING",
    "generic_message",
    # limits
    "ConcurrencyLimitMiddleware",
    "RateLimitMiddleware",
    "by_peer",
    "by_principal",
    "by_method",
    # validation
    "ValidationMiddleware",
    "ValidationError",
    "FieldViolation",
    # OpenTelemetry, server and client (imported on first use)
    "ServerTracingMiddleware",
    "ClientTracingMiddleware",
    "ServerMetricsMiddleware",
    "ClientMetricsMiddleware",
    # client (imported on first use)
    "RetryMiddleware",
    "RetryThrottle",
    "CallCredentialsMiddleware",
    "ApiKeyCredentialsMiddleware",
]
