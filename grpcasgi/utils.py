"""Process-level helpers."""

from __future__ import annotations

import asyncio
import signal
from contextlib import contextmanager
from typing import Any, Collection, Iterator

__all__ = ["graceful_exit"]


def _exit_handler(sig_num: int, servers: Collection[Any], flag: list[bool]) -> None:
    if flag:
        # A second signal: the user wants out now.
        raise SystemExit(128 + sig_num)
    flag.append(True)
    for server in servers:
        server.close()


@contextmanager
def graceful_exit(
    servers: Collection[Any],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    signals: Collection[int] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Close ``servers`` on the first of ``signals``; raise ``SystemExit`` on the second.

    A signal that arrives before ``start()`` closes the servers early, and a
    closed server does not start.
    """
    loop = loop or asyncio.get_running_loop()
    flag: list[bool] = []
    installed = []
    try:
        # Inside the try: if one signal cannot be handled (e.g. not the main
        # thread), the handlers already installed are removed again.
        for sig_num in set(signals):
            loop.add_signal_handler(sig_num, _exit_handler, sig_num, servers, flag)
            installed.append(sig_num)
        yield
    finally:
        for sig_num in installed:
            loop.remove_signal_handler(sig_num)
