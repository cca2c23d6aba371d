"""gRPC server reflection (v1 and v1alpha), grpclib-compatible.

``from grpclib.reflection.service import ServerReflection`` becomes
``from grpcasgi.contrib.reflection.service import ServerReflection`` (or
import it from this package). See ``docs/reflection.md``.
"""

from .service import SERVICE_NAME, SERVICE_NAME_V1ALPHA, Reflector, ServerReflection, ServerReflectionV1Alpha

__all__ = ["Reflector", "SERVICE_NAME", "SERVICE_NAME_V1ALPHA", "ServerReflection", "ServerReflectionV1Alpha"]
