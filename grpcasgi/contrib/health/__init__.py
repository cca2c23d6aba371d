"""gRPC health checking (``grpc.health.v1.Health``), grpclib-compatible.

``from grpclib.health.service import Health`` becomes
``from grpcasgi.contrib.health.service import Health`` (or import everything
from this package). See ``docs/health.md``.
"""

from .check import DEFAULT_CHECK_TIMEOUT, DEFAULT_CHECK_TTL, CheckBase, ServiceCheck, ServiceStatus
from .service import OVERALL, SERVICE_NAME, Health

__all__ = [
    "CheckBase",
    "DEFAULT_CHECK_TIMEOUT",
    "DEFAULT_CHECK_TTL",
    "Health",
    "OVERALL",
    "SERVICE_NAME",
    "ServiceCheck",
    "ServiceStatus",
]
