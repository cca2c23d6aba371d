"""Authentication and authorization before the handler runs.

``AuthMiddleware`` asks its schemes, in order, who is calling. The first
scheme that finds its kind of credential decides: a valid credential gives a
*principal* (any object: a user name, a claims dict, a certificate
identity), an invalid one ends the call UNAUTHENTICATED at once. No
credential for any scheme is UNAUTHENTICATED too. Then ``authorize(scope,
principal)`` may refuse with PERMISSION_DENIED. Either way the layers inside
(and the handler) never run. An accepted principal is put in
``scope["state"][state_key]`` (``stream.state`` in the handler) and in the
:data:`current_principal` context variable.

Status messages are fixed strings: they never repeat the credential, and
static secrets are compared with :func:`hmac.compare_digest` against every
configured secret so timing reveals neither which one matched nor how much
of it.
"""

from __future__ import annotations

import contextvars
import hmac
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence, Union

from ..protocol.status import Status
from ..types import Receive, Scope, Send
from .base import peer_string, send_status

__all__ = [
    "AuthMiddleware",
    "AuthScheme",
    "AuthenticationError",
    "BearerTokenScheme",
    "APIKeyScheme",
    "MTLSScheme",
    "CertificatePrincipal",
    "current_principal",
]

log = logging.getLogger("grpcasgi.middleware.auth")

#: The principal of the call being handled in this context (None outside an authenticated call).
current_principal: contextvars.ContextVar[Any] = contextvars.ContextVar("grpcasgi_principal", default=None)


class AuthenticationError(Exception):
    """A credential was presented but is not valid.

    The message is sent to the client as the UNAUTHENTICATED status message:
    never put the credential (or anything derived from it) in it.
    """


class AuthScheme(Protocol):
    """One way of presenting credentials.

    ``authenticate`` returns the principal for a valid credential, None when
    the call carries no credential of this kind (the next scheme is asked),
    and raises :class:`AuthenticationError` for an invalid one.
    """

    async def authenticate(self, scope: Scope) -> Any: ...


MaybeAwaitable = Union[Any, Awaitable[Any]]
SecretCheck = Callable[[Scope, str], MaybeAwaitable]
Authorize = Callable[[Scope, Any], MaybeAwaitable]


async def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class _SecretScheme:
    """A secret carried in one metadata entry, checked against static secrets or a callable."""

    invalid_message = "Invalid credentials"

    def __init__(
        self,
        *,
        tokens: Mapping[str, Any] | None = None,
        authenticate: SecretCheck | None = None,
    ) -> None:
        if (tokens is None) == (authenticate is None):
            raise ValueError(f"{type(self).__name__} needs exactly one of tokens= or authenticate=")
        if tokens is not None:
            for secret, principal in tokens.items():
                if not isinstance(secret, str) or not secret:
                    raise ValueError("static secrets must be non-empty strings")
                if principal is None:
                    raise ValueError("a static secret's principal must not be None")
        self._tokens = [(secret.encode("utf-8"), principal) for secret, principal in (tokens or {}).items()]
        self._authenticate = authenticate

    async def check(self, scope: Scope, secret: str) -> Any:
        """The principal for ``secret``; :class:`AuthenticationError` if it is not valid."""
        if self._authenticate is None:
            return self._check_static(secret)
        principal = await _resolve(self._authenticate(scope, secret))
        if principal is None:
            raise AuthenticationError(self.invalid_message)
        return principal

    def _check_static(self, secret: str) -> Any:
        # Synchronous, so that schemes with static secrets await nothing.
        presented = secret.encode("utf-8")
        principal = None
        for candidate, value in self._tokens:  # no early exit: constant work per call
            if hmac.compare_digest(presented, candidate):
                principal = value
        if principal is None:
            raise AuthenticationError(self.invalid_message)
        return principal

    @staticmethod
    def _single(scope: Scope, key: str) -> str | None:
        values = scope["metadata"].getall(key, [])
        if not values:
            return None
        if len(values) > 1:
            raise AuthenticationError(f"More than one {key} metadata entry")
        value = values[0]
        if not isinstance(value, str):
            raise AuthenticationError(f"Malformed {key} metadata")
        return value


class BearerTokenScheme(_SecretScheme):
    """``authorization: Bearer <token>`` metadata (what grpcio's access-token credentials send).

    Either ``tokens={"<token>": principal, ...}`` (compared in constant time)
    or ``authenticate=fn(scope, token)`` returning the principal or None for
    an invalid token (sync or async; e.g. JWT verification).
    """

    invalid_message = "Invalid bearer token"

    async def authenticate(self, scope: Scope) -> Any:
        value = self._single(scope, "authorization")
        if value is None:
            return None
        kind, _, token = value.strip().partition(" ")
        if kind.lower() != "bearer":
            return None  # another authorization scheme (e.g. Basic): not ours
        token = token.strip()
        if not token:
            raise AuthenticationError("Malformed bearer token")
        if self._authenticate is None:
            return self._check_static(token)
        return await self.check(scope, token)


class APIKeyScheme(_SecretScheme):
    """An API key in one metadata entry (``x-api-key`` by default)."""

    invalid_message = "Invalid API key"

    def __init__(
        self,
        *,
        header: str = "x-api-key",
        tokens: Mapping[str, Any] | None = None,
        authenticate: SecretCheck | None = None,
    ) -> None:
        super().__init__(tokens=tokens, authenticate=authenticate)
        header = header.lower()
        if not header or header.endswith("-bin") or header.startswith(":"):
            raise ValueError(f"API key header must be an ASCII metadata key, got {header!r}")
        self.header = header

    async def authenticate(self, scope: Scope) -> Any:
        value = self._single(scope, self.header)
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise AuthenticationError("Malformed API key")
        if self._authenticate is None:
            return self._check_static(value)
        return await self.check(scope, value)


@dataclass(frozen=True)
class CertificatePrincipal:
    """Who a verified client certificate names.

    ``name`` is the subject's commonName, or else the first subjectAltName
    value; ``subject`` holds the subject's attributes by name
    (``commonName``, ``organizationName``, ...), ``san`` the subjectAltName
    entries as ``(kind, value)`` pairs (``("DNS", ...)``, ``("URI", ...)``).
    """

    name: str
    subject: Mapping[str, str] = field(default_factory=dict)
    san: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_cert(cls, cert: Mapping[str, Any]) -> "CertificatePrincipal | None":
        """From ``ssl.getpeercert()``'s dict; None when it names nobody."""
        subject: dict[str, str] = {}
        for rdn in cert.get("subject", ()):
            for attr in rdn:
                if len(attr) == 2:
                    subject.setdefault(str(attr[0]), str(attr[1]))
        san = tuple((str(kind), str(value)) for kind, value in cert.get("subjectAltName", ()))
        name = subject.get("commonName") or (san[0][1] if san else "")
        if not name:
            return None
        return cls(name=name, subject=subject, san=san)


class MTLSScheme:
    """The client's TLS certificate, verified by the server's SSL context.

    The server must request client certificates (``ssl_context.verify_mode =
    ssl.CERT_REQUIRED`` or ``CERT_OPTIONAL`` with the client CA loaded);
    without a certificate this scheme finds no credential. ``identity``
    turns the certificate dict into the principal (default:
    :meth:`CertificatePrincipal.from_cert`); returning None refuses it.
    """

    def __init__(
        self,
        *,
        identity: Callable[[Mapping[str, Any]], Any] = CertificatePrincipal.from_cert,
    ) -> None:
        self._identity = identity

    async def authenticate(self, scope: Scope) -> Any:
        cert = scope["peer"].cert()
        if not cert:
            return None
        principal = await _resolve(self._identity(cert))
        if principal is None:
            raise AuthenticationError("Client certificate not accepted")
        return principal


class AuthMiddleware:
    """Authenticate with ``schemes`` (first one that finds a credential decides), then ``authorize``.

    ``authorize(scope, principal)`` (sync or async) returns whether the
    principal may make this call; False ends it PERMISSION_DENIED. Combine
    with :func:`~grpcasgi.middleware.select` to exempt methods (health,
    reflection) from authentication.
    """

    def __init__(
        self,
        app: Any,
        *,
        schemes: Sequence[AuthScheme],
        authorize: Authorize | None = None,
        state_key: str = "principal",
    ) -> None:
        schemes = list(schemes)
        if not schemes:
            raise ValueError("AuthMiddleware needs at least one scheme")
        for scheme in schemes:
            if not callable(getattr(scheme, "authenticate", None)):
                raise TypeError(f"{scheme!r} is not an auth scheme (no authenticate(scope) method)")
        self.app = app
        self.schemes = schemes
        self.authorize = authorize
        self.state_key = state_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = None
        try:
            for scheme in self.schemes:
                principal = await scheme.authenticate(scope)
                if principal is not None:
                    break
        except AuthenticationError as exc:
            log.info("%s from %s: unauthenticated: %s", scope["path"], peer_string(scope), exc)
            await send_status(send, Status.UNAUTHENTICATED, str(exc) or "Invalid credentials")
            return
        if principal is None:
            log.info("%s from %s: unauthenticated: no credentials", scope["path"], peer_string(scope))
            await send_status(send, Status.UNAUTHENTICATED, "Missing credentials")
            return
        if self.authorize is not None and not await _resolve(self.authorize(scope, principal)):
            log.info("%s from %s: permission denied for %s", scope["path"], peer_string(scope), principal)
            await send_status(send, Status.PERMISSION_DENIED, "Permission denied")
            return
        scope["state"][self.state_key] = principal
        token = current_principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(token)
