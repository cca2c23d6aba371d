"""Server middleware built only on the call contract of ``docs/spec.md``.

Each built-in lives in its own module and can be read as an example of
writing middleware; ``base`` has the tools they share (:class:`CallObserver`
to learn how a call ended, :func:`send_status` to reject one) and
``selector`` applies any middleware to some methods only. See
``docs/middleware.md``.
"""

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
]
