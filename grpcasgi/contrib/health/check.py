"""Health checks: a status the application sets, and periodic probes.

The check protocol is grpclib's (``__status__``, ``__check__``,
``__subscribe__``, ``__unsubscribe__``), so checks written for
``grpclib.health`` port by changing imports. A check's status is ``True``
(healthy), ``False`` (unhealthy) or ``None`` (unknown yet).

Subscribing is how the :class:`~grpcasgi.contrib.health.service.Health`
service says "someone is watching": :class:`ServiceCheck` probes periodically
only while it has subscribers, so an idle server never runs its (possibly
expensive) checks; a ``Check`` call probes once if the cached result is older
than the TTL.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Awaitable, Callable, Optional

__all__ = [
    "CheckBase",
    "ServiceStatus",
    "ServiceCheck",
    "DEFAULT_CHECK_TTL",
    "DEFAULT_CHECK_TIMEOUT",
]

log = logging.getLogger("grpcasgi.contrib.health")

DEFAULT_CHECK_TTL = 30.0
DEFAULT_CHECK_TIMEOUT = 10.0

#: ``True`` healthy, ``False`` unhealthy, ``None`` unknown.
CheckStatus = Optional[bool]


class CheckBase(abc.ABC):
    """What :class:`~grpcasgi.contrib.health.service.Health` needs from a check."""

    @abc.abstractmethod
    def __status__(self) -> CheckStatus:
        """The last known status, without doing any work."""

    @abc.abstractmethod
    async def __check__(self) -> CheckStatus:
        """A status fresh enough to answer a ``Check`` call with."""

    @abc.abstractmethod
    async def __subscribe__(self) -> asyncio.Event:
        """Start watching: the returned event is set whenever the status changes."""

    @abc.abstractmethod
    async def __unsubscribe__(self, event: asyncio.Event) -> None:
        """Stop watching with an event :meth:`__subscribe__` returned."""


class _Notifier:
    """The subscriber events of one check, set together on a status change."""

    def __init__(self) -> None:
        self.events: set[asyncio.Event] = set()

    def notify(self) -> None:
        for event in self.events:
            event.set()


class ServiceStatus(CheckBase):
    """A status the application sets when it learns something::

        redis_status = ServiceStatus()
        redis_status.set(True)   # connected
        redis_status.set(False)  # connection lost

    Watchers see every change at once; nothing runs in the background.
    """

    def __init__(self, value: CheckStatus = None) -> None:
        self._value = value
        self._notifier = _Notifier()

    def set(self, value: CheckStatus) -> None:
        """Set the status: ``True`` healthy, ``False`` unhealthy, ``None`` unknown."""
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"status must be True, False or None, not {value!r}")
        if value != self._value:
            self._value = value
            self._notifier.notify()

    def __status__(self) -> CheckStatus:
        return self._value

    async def __check__(self) -> CheckStatus:
        return self._value

    async def __subscribe__(self) -> asyncio.Event:
        event = asyncio.Event()
        self._notifier.events.add(event)
        return event

    async def __unsubscribe__(self, event: asyncio.Event) -> None:
        self._notifier.events.discard(event)

    def __repr__(self) -> str:
        return f"ServiceStatus({self._value!r})"


class ServiceCheck(CheckBase):
    """Probe with ``func`` (``async () -> bool | None``) while someone is interested::

        async def db_ok() -> bool:
            await db.execute("SELECT 1")
            return True

        db_check = ServiceCheck(db_ok, check_ttl=30, check_timeout=10)

    A probe that raises, returns something other than a bool/None, or takes
    longer than ``check_timeout`` seconds counts as unhealthy (and is logged).
    A result is reused for ``check_ttl`` seconds by ``Check`` calls; while
    ``Watch`` streams are open the check re-probes every ``check_ttl``
    seconds, and stops when the last one closes. Concurrent callers share one
    probe, and a probe nobody waits for any more is cancelled.
    """

    def __init__(
        self,
        func: Callable[[], Awaitable[CheckStatus]],
        *,
        check_ttl: float = DEFAULT_CHECK_TTL,
        check_timeout: float = DEFAULT_CHECK_TIMEOUT,
    ) -> None:
        if check_ttl <= 0:
            raise ValueError("check_ttl must be positive")
        if check_timeout <= 0:
            raise ValueError("check_timeout must be positive")
        self._func = func
        self._check_ttl = check_ttl
        self._check_timeout = check_timeout
        self._value: CheckStatus = None
        self._checked_at: float | None = None
        self._probe_task: asyncio.Task[CheckStatus] | None = None
        self._probe_waiters = 0
        self._poll_task: asyncio.Task[None] | None = None
        self._notifier = _Notifier()

    @property
    def polling(self) -> bool:
        """Whether the periodic probe loop is running (someone is watching)."""
        return self._poll_task is not None

    def __status__(self) -> CheckStatus:
        return self._value

    async def __check__(self) -> CheckStatus:
        loop = asyncio.get_running_loop()
        if self._checked_at is not None and loop.time() - self._checked_at < self._check_ttl:
            return self._value
        return await self._probe()

    async def __subscribe__(self) -> asyncio.Event:
        event = asyncio.Event()
        self._notifier.events.add(event)
        if self._poll_task is None:
            self._poll_task = asyncio.get_running_loop().create_task(self._poll())
        return event

    async def __unsubscribe__(self, event: asyncio.Event) -> None:
        self._notifier.events.discard(event)
        task = self._poll_task
        if self._notifier.events or task is None:
            return
        self._poll_task = None
        task.cancel()
        # asyncio.wait: the poller's cancellation is not ours to re-raise.
        await asyncio.wait([task])

    async def _poll(self) -> None:
        # Always probe (not __check__): timer wake-ups may come a clock
        # resolution early, which would make a TTL comparison skip a period.
        while True:
            await self._probe()
            await asyncio.sleep(self._check_ttl)

    async def _probe(self) -> CheckStatus:
        """Run (or join) the current probe; cancel it when its last waiter leaves."""
        task = self._probe_task
        if task is None or task.done():
            task = self._probe_task = asyncio.get_running_loop().create_task(self._run_probe())
        self._probe_waiters += 1
        try:
            return await asyncio.shield(task)
        finally:
            self._probe_waiters -= 1
            if self._probe_waiters == 0 and not task.done():
                task.cancel()
                if self._probe_task is task:
                    self._probe_task = None  # the next caller starts afresh

    async def _run_probe(self) -> CheckStatus:
        value: CheckStatus
        try:
            value = await asyncio.wait_for(self._func(), self._check_timeout)
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"a health check must return True, False or None, not {value!r}")
        except asyncio.TimeoutError:
            log.warning("Health check %r timed out after %ss", self._func, self._check_timeout)
            value = False
        except Exception:
            log.exception("Health check %r failed", self._func)
            value = False
        self._checked_at = asyncio.get_running_loop().time()
        if value != self._value:
            (log.info if value else log.warning)("Health check %r status changed to %r", self._func, value)
            self._value = value
            self._notifier.notify()
        return value

    def __repr__(self) -> str:
        return f"ServiceCheck({self._func!r}, check_ttl={self._check_ttl}, check_timeout={self._check_timeout})"
