"""Routing: method path → :class:`~grpcasgi.const.Handler`, decided before middleware runs.

Services are objects with a ``__mapping__()`` method (what generated
``<Service>Base`` classes provide, or hand-written, see ``docs/codegen.md``).
"""

from __future__ import annotations

from typing import Any, Collection, Iterator

from .const import Handler

__all__ = ["Router", "split_path"]


def split_path(path: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` → ``("pkg.Service", "Method")``; malformed paths give empty names."""
    if path.startswith("/"):
        service, sep, method = path[1:].partition("/")
        if sep and service and method and "/" not in method:
            return service, method
    return "", ""


class Router:
    __slots__ = ("_routes", "_names", "services")

    def __init__(self, handlers: Collection[Any]) -> None:
        self._routes: dict[str, Handler] = {}
        self._names: dict[str, tuple[str, str]] = {}
        services: list[str] = []
        for obj in handlers:
            mapping = obj.__mapping__()
            for path, handler in mapping.items():
                if path in self._routes:
                    raise ValueError(f"method {path} is implemented twice")
                if not isinstance(handler, Handler):
                    handler = Handler(*handler)
                self._routes[path] = handler
                names = split_path(path)
                self._names[path] = names
                if names[0] and names[0] not in services:
                    services.append(names[0])
        #: Names of the services served, in registration order.
        self.services: tuple[str, ...] = tuple(services)

    def resolve(self, path: str) -> tuple[str, str, Handler | None]:
        names = self._names.get(path)
        if names is not None:
            return names[0], names[1], self._routes[path]
        service, method = split_path(path)
        return service, method, None

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)
