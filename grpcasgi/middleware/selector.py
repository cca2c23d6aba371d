"""Apply a middleware to some methods only.

Authentication everywhere except the health and reflection services, rate
limits on one expensive method: the wrapped middleware stays unaware of the
selection::

    Server(services, middleware=[
        select(Middleware(AuthMiddleware, schemes=[...]), exclude=SYSTEM_SERVICES),
    ])

Patterns are shell globs (:func:`fnmatch.fnmatchcase`, case-sensitive),
matched according to their shape:

* ``/pkg.Service/Method`` (leading slash): the full path;
* ``pkg.Service/Method``, ``pkg.Service/Get*``, ``*/Delete*`` (a slash inside):
  ``service/method``;
* ``pkg.Service``, ``grpc.reflection.*`` (no slash): the service name.

Routing happens before middleware, so ``scope["service"]`` and
``scope["method"]`` are set for unknown methods too (empty for malformed
paths) and selection works the same for them.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Callable, Iterable

from ..call import Middleware
from ..types import App, Receive, Scope, Send

__all__ = ["Selector", "select", "SYSTEM_SERVICES", "matches"]

#: The health-checking and reflection services, usually exempt from auth and limits.
SYSTEM_SERVICES: tuple[str, ...] = ("grpc.health.v1.Health", "grpc.reflection.*")

Predicate = Callable[[Scope], bool]

#: Bound on the paths a Selector remembers (routed methods only).
_CACHE_LIMIT = 4096


def matches(pattern: str, scope: Scope) -> bool:
    """Whether one glob ``pattern`` selects the call in ``scope`` (see the module docs)."""
    if pattern.startswith("/"):
        return fnmatchcase(scope["path"], pattern)
    if "/" in pattern:
        return fnmatchcase(f"{scope['service']}/{scope['method']}", pattern)
    return fnmatchcase(scope["service"], pattern)


def _patterns(value: str | Iterable[str] | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"Selector {name}= patterns must be non-empty strings, got {pattern!r}")
    return patterns


class Selector:
    """Run ``middleware`` for selected calls; let the others bypass it.

    A call is selected when it matches one of ``include`` (all calls when
    ``include`` is None), matches none of ``exclude``, and ``predicate(scope)``
    (if given) is true. The wrapped middleware is instantiated once, around
    the same inner app, when the stack is built.
    """

    __slots__ = ("app", "middleware", "include", "exclude", "predicate", "_matched")

    def __init__(
        self,
        app: App,
        middleware: Middleware,
        *,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        predicate: Predicate | None = None,
    ) -> None:
        if not isinstance(middleware, Middleware):
            raise TypeError(f"Selector wraps a Middleware(cls, **options) entry, got {middleware!r}")
        self.app = app
        cls, args, kwargs = middleware
        self.middleware: App = cls(app, *args, **kwargs)
        self.include = _patterns(include, "include")
        self.exclude = _patterns(exclude, "exclude")
        self.predicate = predicate
        # Whether a path matches the patterns, by path: glob matching cost more
        # than many middleware it guards. Only routed methods are remembered
        # (their number is fixed by the services); clients can invent unknown
        # paths without end, so those are matched per call.
        self._matched: dict[str, bool] = {}

    def _matches(self, scope: Scope) -> bool:
        if self.include is not None and not any(matches(p, scope) for p in self.include):
            return False
        return self.exclude is None or not any(matches(p, scope) for p in self.exclude)

    def selects(self, scope: Scope) -> bool:
        matched = self._matched.get(scope["path"])
        if matched is None:
            matched = self._matches(scope)
            if scope.get("handler") is not None and len(self._matched) < _CACHE_LIMIT:
                self._matched[scope["path"]] = matched
        return matched and (self.predicate is None or bool(self.predicate(scope)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.selects(scope):
            await self.middleware(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def select(
    middleware: Middleware,
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    predicate: Predicate | None = None,
) -> Middleware:
    """``Middleware(Selector, middleware, include=..., exclude=..., predicate=...)``, validated now."""
    if not isinstance(middleware, Middleware):
        raise TypeError(f"select() wraps a Middleware(cls, **options) entry, got {middleware!r}")
    kwargs: dict[str, Any] = {
        "include": _patterns(include, "include"),
        "exclude": _patterns(exclude, "exclude"),
        "predicate": predicate,
    }
    return Middleware(Selector, middleware, **kwargs)
