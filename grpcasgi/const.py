"""Names shared by generated code, servers and clients (as in ``grpclib.const``)."""

from __future__ import annotations

import enum
from typing import Any, Callable, Coroutine, NamedTuple

from .protocol.status import Status

__all__ = ["Status", "Cardinality", "Handler"]


class Cardinality(enum.Enum):
    """The four shapes of a gRPC method: (client streams?, server streams?)."""

    UNARY_UNARY = (False, False)
    UNARY_STREAM = (False, True)
    STREAM_UNARY = (True, False)
    STREAM_STREAM = (True, True)

    @property
    def client_streaming(self) -> bool:
        return self.value[0]

    @property
    def server_streaming(self) -> bool:
        return self.value[1]


class Handler(NamedTuple):
    """One method of a service, as returned by ``__mapping__()``.

    ``func`` is ``async def Method(stream)``; the types are the request and
    reply message classes the codec decodes and encodes.
    """

    func: Callable[[Any], Coroutine[Any, Any, None]]
    cardinality: Cardinality
    request_type: Any
    reply_type: Any
