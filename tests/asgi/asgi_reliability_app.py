"""The app the ASGI reliability tests run under Hypercorn (``asgi_reliability_app:app``).

The Echo service of ``asgi_testapp`` (without its auth middleware), the
``contrib.health`` service, and ``test.asgi.Diag``, which reports what only
the server process can see: its asyncio tasks (all of them, and the
adapter's reader tasks and call tasks), its memory, and how many ``Hold``
calls entered their handler and finished. The process logs at INFO to its
stderr with logger names, so a test can find grpcasgi's log lines in
``ServerProcess.log``. ``max_receive_message_length`` is 1 MiB, which keeps
the limit tests small.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import sys
from typing import Any

# Before the imports below: asgi_testapp builds an App, which logs the Hypercorn patches.
logging.basicConfig(
    level=logging.INFO, stream=sys.stderr, format="LOG %(levelname)s %(name)s: %(message)s", force=True
)

from google.protobuf import wrappers_pb2  # noqa: E402

from asgi_testapp import EchoService  # noqa: E402
from grpcasgi import Cardinality, Handler  # noqa: E402
from grpcasgi.asgi import App  # noqa: E402
from grpcasgi.config import Configuration  # noqa: E402
from grpcasgi.contrib.health import Health  # noqa: E402

S = wrappers_pb2.StringValue
log = logging.getLogger("asgi_reliability_app")
MAX_RECEIVE = 1024 * 1024
DIAG = "/test.asgi.Diag/"

#: Hold calls: entered their handler, finished (sent their reply), were cancelled.
HOLDS = {"entered": 0, "finished": 0, "cancelled": 0}
#: Per key: how many messages Flood has handed to send() so far.
FLOODS: dict[str, int] = {}


def _coro_name(task: asyncio.Task[Any]) -> str:
    return getattr(task.get_coro(), "__qualname__", "")


def snapshot() -> dict[str, Any]:
    tasks = asyncio.all_tasks()
    names = [_coro_name(t) for t in tasks]
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return {
        "pid": os.getpid(),
        "tasks": len(tasks),
        "readers": names.count("AsgiServerCall._read"),
        "calls": names.count("ServerCall._run"),
        "rss": rss_pages * os.sysconf("SC_PAGE_SIZE"),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "holds": dict(HOLDS),
        "floods": dict(FLOODS),
    }


class Diag:
    async def state(self, stream: Any) -> None:
        """Snapshot; with ``{"tasks_at_most": n}`` first wait (5 s at most) until
        the process runs no more than ``n`` tasks, counting the tasks that carry
        this very call."""
        request = await stream.recv_message()
        options = json.loads(request.value or "{}")
        limit = options.get("tasks_at_most")
        if limit is not None:
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while len(asyncio.all_tasks()) > limit and loop.time() < end:
                await asyncio.sleep(0.02)
        if options.get("collect"):
            gc.collect()
        result = snapshot()
        if options.get("names"):
            result["names"] = sorted(_coro_name(t) for t in asyncio.all_tasks())
        await stream.send_message(S(value=json.dumps(result)))

    async def hold(self, stream: Any) -> None:
        """Bidi: reply "held" to the first message, "done:<value>" to the second, then end."""
        first = await stream.recv_message()
        HOLDS["entered"] += 1
        try:
            await stream.send_message(S(value=f"held:{first.value}"))
            second = await stream.recv_message()
        except asyncio.CancelledError:
            HOLDS["cancelled"] += 1
            raise
        await stream.send_message(S(value=f"done:{second.value if second else ''}"))
        HOLDS["finished"] += 1

    async def flood(self, stream: Any) -> None:
        """Server stream of 64 KiB messages until cancelled; counts what send() accepted."""
        request = await stream.recv_message()
        key = request.value
        FLOODS[key] = 0
        chunk = S(value="f" * 65536)
        while True:
            await stream.send_message(chunk)
            FLOODS[key] += 1

    async def linger(self, stream: Any) -> None:
        """Unary that never answers; logs its cancellation (seen after the process exited)."""
        request = await stream.recv_message()
        await stream.send_initial_metadata()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.info("Linger %s: cancelled", request.value)
            raise

    def __mapping__(self) -> dict[str, Handler]:
        return {
            DIAG + "Linger": Handler(self.linger, Cardinality.UNARY_UNARY, S, S),
            DIAG + "State": Handler(self.state, Cardinality.UNARY_UNARY, S, S),
            DIAG + "Hold": Handler(self.hold, Cardinality.STREAM_STREAM, S, S),
            DIAG + "Flood": Handler(self.flood, Cardinality.UNARY_STREAM, S, S),
        }


def _report_at_shutdown() -> None:
    # Printed after Hypercorn closed every connection: the tests compare it
    # with what their clients saw.
    print("SHUTDOWN-REPORT " + json.dumps(HOLDS), flush=True)


health = Health()
app = App(
    [EchoService(), Diag(), health],
    config=Configuration(max_receive_message_length=MAX_RECEIVE),
    on_shutdown=[_report_at_shutdown],
)
