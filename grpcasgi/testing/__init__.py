"""Testing helpers for applications built on grpcasgi.

* :class:`ChannelFor` — a client channel wired in-process (no socket) to
  services, through the real HTTP/2 client and server stacks.
* :mod:`grpcasgi.testing.memory` — the in-memory transport pair behind it.
* :mod:`grpcasgi.testing.pytest_plugin` — ``grpc_server`` and ``grpc_channel``
  fixtures, registered automatically when grpcasgi is installed.

Names are imported lazily: the pytest plugin lives in this package and is
loaded by every pytest run in an environment with grpcasgi installed, so the
package itself must stay cheap and independent of the rest of grpcasgi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .channel import ChannelFor
    from .memory import MemoryTransport, memory_pipe

__all__ = ["ChannelFor", "MemoryTransport", "memory_pipe"]


def __getattr__(name: str) -> Any:
    if name == "ChannelFor":
        from .channel import ChannelFor

        return ChannelFor
    if name in ("MemoryTransport", "memory_pipe"):
        from . import memory

        return getattr(memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
