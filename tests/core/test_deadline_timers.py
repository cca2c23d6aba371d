"""grpcasgi.timers: deadlines grouped into shared slot timers, still exact.

End to end, every deadline test over a socket (test_deadlines_cancel.py,
test_handler_stream.py, the interop timeout cases) runs through these
timers on both the server and the client; here their own promises are
checked on a real event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest

from grpcasgi.timers import DeadlineTimers, deadline_timers

#: A bound on waiting for a timer that must fire: a safety net, not the synchronisation.
SAFETY = 5.0

_var: contextvars.ContextVar[str] = contextvars.ContextVar("test_deadline_timers", default="empty")


async def _fired_at(timers: DeadlineTimers, delay: float) -> tuple[float, float]:
    """(the deadline, the loop time at which the callback ran)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    timer = timers.call_later(delay, lambda: done.set_result(loop.time()))
    return timer.when, await asyncio.wait_for(done, SAFETY)


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.13, 0.31])
async def test_fires_at_its_deadline_never_before(delay: float) -> None:
    # 0 and 0.02 are inside the current slot (exact timer at once); 0.13 and
    # 0.31 wait for a slot timer, then get an exact one.
    timers = DeadlineTimers(asyncio.get_running_loop(), resolution=0.1)
    when, fired = await _fired_at(timers, delay)
    assert fired >= when
    assert timers.pending() == 0


async def test_cancelled_timers_never_fire_and_leave_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    timers = DeadlineTimers(loop, resolution=0.05)
    fired: list[int] = []
    armed = [timers.call_later(0.06 + i * 0.001, lambda i=i: fired.append(i)) for i in range(50)]
    assert timers.pending() == 50
    for timer in armed[::2]:
        timer.cancel()
        timer.cancel()  # idempotent
    assert timers.pending() == 25
    assert all(timer.cancelled() for timer in armed[::2])
    # A later deadline that must fire: once it has, every earlier one has too.
    await _fired_at(timers, 0.12)
    assert sorted(fired) == list(range(1, 50, 2))
    assert timers.pending() == 0


async def test_cancel_after_the_slot_opened_cancels_the_exact_timer() -> None:
    loop = asyncio.get_running_loop()
    resolution = 0.1
    timers = DeadlineTimers(loop, resolution=resolution)
    fired: list[str] = []
    doomed = timers.call_later(0.25, lambda: fired.append("doomed"))
    # A timer due earlier in the same slot: once it has fired, the slot is
    # open and the doomed timer waits on an exact loop timer.
    start = int(doomed.when / resolution) * resolution
    sentinel_delay = (start + doomed.when) / 2 - loop.time()
    await _fired_at(timers, sentinel_delay)
    assert timers.pending() == 0 and not doomed.cancelled()
    doomed.cancel()
    await _fired_at(timers, doomed.when - loop.time() + 0.02)
    assert fired == []


async def test_one_loop_timer_per_slot_not_per_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed_on_loop: list[float] = []
    call_at = loop.call_at

    def counting_call_at(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed_on_loop.append(when)
        return call_at(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    timers = DeadlineTimers(loop, resolution=10.0)
    armed = [timers.call_later(20.0 + i * 0.001, lambda: None) for i in range(200)]
    assert 1 <= len(armed_on_loop) <= 2  # one slot (two if 20 s straddles a slot boundary)
    for timer in armed:
        timer.cancel()
    assert timers.pending() == 0


async def test_callbacks_run_in_an_empty_context() -> None:
    """A slot timer outlives the call that armed it first: it must not hold that call's context."""
    loop = asyncio.get_running_loop()
    timers = DeadlineTimers(loop, resolution=0.05)
    seen: asyncio.Future[str] = loop.create_future()
    _var.set("the caller's")
    timers.call_later(0.08, lambda: seen.set_result(_var.get()))
    assert await asyncio.wait_for(seen, SAFETY) == "empty"


async def test_the_loop_is_not_kept_alive() -> None:
    loop = asyncio.new_event_loop()
    try:
        timers = deadline_timers(loop)
        assert deadline_timers(loop) is timers
        assert deadline_timers(asyncio.get_running_loop()) is not timers
    finally:
        loop.close()
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert ref() is None


def test_resolution_must_be_positive() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError):
            DeadlineTimers(loop, resolution=0)
    finally:
        loop.close()
