"""grpcasgi: asyncio gRPC where every call is a scope flowing through middleware.

Handlers, servers and clients follow grpclib's API; see ``docs/spec.md`` for
the scope/middleware contract and ``docs/architecture.md`` for the layers.
"""

from .call import Middleware
from .config import Configuration
from .const import Cardinality, Handler, Status
from .deadline import Deadline
from .exceptions import GRPCError, ProtocolError, StreamTerminatedError

from ._version import __version__

__all__ = [
    "Cardinality",
    "Configuration",
    "Deadline",
    "GRPCError",
    "Handler",
    "Middleware",
    "ProtocolError",
    "Status",
    "StreamTerminatedError",
    "__version__",
]
