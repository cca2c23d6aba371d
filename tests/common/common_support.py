"""Support shared by several test folders (``core``, ``middleware_client``,
``hostile``, ``contrib``), kept in one place so the folders cannot drift apart:

* :class:`Service`, a service built from plain functions;
* :func:`no_task_leaks`, the body of each folder's autouse ``no_leaked_tasks``
  fixture (which tests it guards, and how long finished calls get to settle,
  stay each folder's choice).

Imported by plain name: ``tests/conftest.py`` puts every test folder,
this one included, on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi.const import Handler


class Service:
    """A service built from plain functions: ``Service("pkg.Svc", Method=(func, cardinality))``.

    Request and reply types default to ``StringValue``; pass a 4-tuple
    ``(func, cardinality, req, rep)`` for others.
    """

    def __init__(self, name: str, **methods: Any) -> None:
        self.name = name
        self.methods = methods

    def __mapping__(self) -> dict[str, Handler]:
        out = {}
        for method, spec in self.methods.items():
            func, cardinality, *types = spec
            req, rep = types if types else (StringValue, StringValue)
            out[f"/{self.name}/{method}"] = Handler(func, cardinality, req, rep)
        return out


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every task of the running loop but the current one."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current}


@contextlib.asynccontextmanager
async def no_task_leaks(settle_turns: int) -> AsyncIterator[None]:
    """Fail if a task started inside the block is still running after it.

    Finished calls get up to ``settle_turns`` short loop turns (10 ms each) to
    wind down first; what is left is cancelled (so it cannot disturb the next
    test) and reported.
    """
    before = other_tasks()
    yield
    leaked: set[asyncio.Task[Any]] = set()
    for _ in range(settle_turns):
        leaked = {t for t in other_tasks() - before if not t.done()}
        if not leaked:
            break
        await asyncio.sleep(0.01)
    for task in leaked:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*leaked, return_exceptions=True)
    assert not leaked, f"tasks leaked by the test: {leaked}"
