"""The ``grpc.health.v1.Health`` service (gRPC health-checking protocol).

Statuses come from checks (:mod:`grpcasgi.contrib.health.check`) grouped by
service name, in grpclib's shape::

    health = Health({auth_service: [redis_status], billing: [db_check]})
    server = Server([auth_service, billing, health])

A key is a service object (every service name in its ``__mapping__`` paths),
a service name string, or :data:`OVERALL` (the empty name ``""``, the whole
server). Without an explicit ``OVERALL`` entry the server's overall status
combines every check given. A service without checks is always SERVING.

A service's status is SERVING when all its checks are ``True``, UNKNOWN
while all are ``None``, NOT_SERVING otherwise. When the server starts
shutting down (``Server.close()`` calls :meth:`Health.__on_close__` before it
sends GOAWAY) every known service reports NOT_SERVING and open ``Watch``
streams get NOT_SERVING and end, so load balancers drain the server while
its connections still work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Collection, Iterable, Mapping

from ...const import Status
from ...exceptions import GRPCError
from ...routing import split_path
from ...stream import Stream
from ..protos.grpc.health.v1.health_grpc import HealthBase
from ..protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from .check import CheckBase

__all__ = ["Health", "OVERALL", "SERVICE_NAME"]

log = logging.getLogger("grpcasgi.contrib.health")

#: The full name of the health service, e.g. for reflection's service list.
SERVICE_NAME = "grpc.health.v1.Health"

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
UNKNOWN = HealthCheckResponse.UNKNOWN
SERVICE_UNKNOWN = HealthCheckResponse.SERVICE_UNKNOWN


class _Overall:
    """Key for the server's overall status: the empty service name."""

    def __repr__(self) -> str:
        return "OVERALL"


#: Configure the overall (``""``) status explicitly: ``Health({OVERALL: [...], ...})``.
OVERALL = _Overall()

_Key = Any  # a service object, a service name, or OVERALL


def _service_names(key: _Key) -> list[str]:
    if key is OVERALL:
        return [""]
    if isinstance(key, str):
        return [key]
    mapping = getattr(key, "__mapping__", None)
    if mapping is None:
        raise TypeError(f"health check keys are services, service names or OVERALL, not {key!r}")
    names: list[str] = []
    for path in mapping():
        name = split_path(path)[0]
        if name and name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"{key!r} has no methods, so no service name to report health for")
    return names


def _combine(checks: Collection[CheckBase]) -> HealthCheckResponse.ServingStatus:
    if not checks:
        return SERVING
    statuses = {check.__status__() for check in checks}
    if statuses == {True}:
        return SERVING
    if statuses == {None}:
        return UNKNOWN
    return NOT_SERVING


async def _first_of(*aws: Awaitable[Any]) -> None:
    """Wait until the first awaitable finishes; cancel (and reap) the others."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in tasks:  # surface a failure of the task that finished
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def _refresh(checks: Collection[CheckBase]) -> None:
    """Let every check update its status; a check that raises keeps its old one."""
    results = await asyncio.gather(*(check.__check__() for check in checks), return_exceptions=True)
    for check, result in zip(checks, results):
        if isinstance(result, Exception):
            log.error("Health check %r raised", check, exc_info=result)
        elif isinstance(result, BaseException):
            raise result


async def _goodbye(stream: Stream[Any, HealthCheckResponse], last: Any) -> None:
    """Best effort for a watch cancelled by shutdown: NOT_SERVING (if the
    service is known and the watcher has not heard it yet), then an OK end."""
    try:
        if last not in (NOT_SERVING, SERVICE_UNKNOWN):
            await stream.send_message(HealthCheckResponse(status=NOT_SERVING))
        await stream.send_trailing_metadata()
    except Exception as exc:  # the client may be gone already
        log.debug("Health: could not end a watch cleanly: %r", exc)


class Health(HealthBase):
    """Health checking service; see the module docstring."""

    def __init__(self, checks: Mapping[_Key, Iterable[CheckBase]] | None = None) -> None:
        self._checks: dict[str, tuple[CheckBase, ...]] = {}
        for key, key_checks in (checks or {}).items():
            key_checks = tuple(key_checks)
            for check in key_checks:
                if not isinstance(check, CheckBase):
                    raise TypeError(f"{check!r} is not a health check (CheckBase)")
            for name in _service_names(key):
                # A service given twice (object and name) gets both lists.
                self._checks[name] = tuple(dict.fromkeys(self._checks.get(name, ()) + key_checks))
        if "" not in self._checks:
            overall: dict[CheckBase, None] = {}
            for key_checks in self._checks.values():
                overall.update(dict.fromkeys(key_checks))
            self._checks[""] = tuple(overall)
        self._closing = False
        self._closing_event: asyncio.Event | None = None

    # -- status ------------------------------------------------------------

    @property
    def services(self) -> tuple[str, ...]:
        """The service names this health service knows (``""`` is the server)."""
        return tuple(self._checks)

    @property
    def closing(self) -> bool:
        return self._closing

    def status(self, service: str = "") -> HealthCheckResponse.ServingStatus:
        """The current status of ``service`` from the checks' last results."""
        checks = self._checks.get(service)
        if checks is None:
            return SERVICE_UNKNOWN
        if self._closing:
            return NOT_SERVING
        return _combine(checks)

    def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING for everything from now on and end open watches.

        Called by ``Server.close()`` through :meth:`__on_close__`; call it
        yourself when the server runs elsewhere (e.g. under an ASGI server)
        and you want to drain it before it stops. It cannot be undone.
        """
        if self._closing:
            return
        self._closing = True
        log.info("Health: server shutting down, all services NOT_SERVING")
        if self._closing_event is not None:
            self._closing_event.set()

    def __on_close__(self) -> None:
        self.enter_graceful_shutdown()

    def _closing_wait(self) -> Awaitable[bool]:
        if self._closing_event is None:
            self._closing_event = asyncio.Event()
            if self._closing:
                self._closing_event.set()
        return self._closing_event.wait()

    # -- RPCs ----------------------------------------------------------------

    async def Check(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        request = await stream.recv_message()
        if request is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "no request message")
        checks = self._checks.get(request.service)
        if checks is None:
            raise GRPCError(Status.NOT_FOUND, f"unknown service: {request.service!r}")
        if not self._closing and checks:
            await _refresh(checks)
        await stream.send_message(HealthCheckResponse(status=self.status(request.service)))

    async def Watch(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        request = await stream.recv_message()
        if request is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "no request message")
        service = request.service
        checks = self._checks.get(service)
        last: HealthCheckResponse.ServingStatus | None = None
        try:
            if checks is None:
                # Per the spec: not an error; the set of services is fixed, so
                # the stream stays open until the client or the server leaves.
                last = SERVICE_UNKNOWN
                await stream.send_message(HealthCheckResponse(status=last))
                await self._closing_wait()
                return
            events = [await check.__subscribe__() for check in checks]
            try:
                if not self._closing and checks:
                    # A first answer from stale or never-run checks would mislead
                    # probes that read one message; give the checks a chance first.
                    await _first_of(_refresh(checks), self._closing_wait())
                last = self.status(service)
                await stream.send_message(HealthCheckResponse(status=last))
                while not self._closing:
                    await _first_of(*(event.wait() for event in events), self._closing_wait())
                    for event in events:
                        event.clear()
                    current = self.status(service)
                    if current != last:
                        last = current
                        await stream.send_message(HealthCheckResponse(status=last))
                if last != NOT_SERVING:
                    await stream.send_message(HealthCheckResponse(status=NOT_SERVING))
            finally:
                for check, event in zip(checks, events):
                    await check.__unsubscribe__(event)
        except asyncio.CancelledError:
            # Server.close() without a grace period cancels the calls right
            # after __on_close__; watchers must still learn NOT_SERVING.
            if self._closing and not stream.trailers_sent:
                await _goodbye(stream, last)
            raise
