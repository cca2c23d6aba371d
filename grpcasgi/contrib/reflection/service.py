"""gRPC server reflection (``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``).

Tools such as ``grpcurl`` and ``grpcui`` ask a server which services it has
and for the ``.proto`` descriptors behind them. Both protocol versions are
served because clients still differ: grpc-go and grpcurl prefer ``v1`` and
fall back to ``v1alpha``; grpcio-reflection's client speaks only ``v1alpha``.
The two versions are the same messages in different packages, so one
:class:`Reflector` answers for both.

Descriptors come from a protobuf ``DescriptorPool`` (the default pool, where
generated ``_pb2`` modules register themselves, unless one is given). Every
file descriptor answer carries the file and its transitive dependencies,
each once, the requested file first, so a client can build a pool from a
single answer. A lookup that fails is an in-stream ``error_response`` with
NOT_FOUND (the stream goes on), as the protocol specifies.
"""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType
from typing import Any, Collection, Iterable

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from ...const import Status
from ...routing import split_path
from ...stream import Stream
from ..protos.grpc.reflection.v1 import reflection_grpc as v1_grpc
from ..protos.grpc.reflection.v1 import reflection_pb2 as v1_pb2
from ..protos.grpc.reflection.v1alpha import reflection_grpc as v1alpha_grpc
from ..protos.grpc.reflection.v1alpha import reflection_pb2 as v1alpha_pb2

__all__ = [
    "ServerReflection",
    "ServerReflectionV1Alpha",
    "Reflector",
    "SERVICE_NAME",
    "SERVICE_NAME_V1ALPHA",
    "import_descriptor_modules",
    "service_names",
]

log = logging.getLogger("grpcasgi.contrib.reflection")

SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
SERVICE_NAME_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


def service_names(services: Iterable[Any]) -> list[str]:
    """Every service name in the ``__mapping__`` paths of ``services``, in order."""
    names: list[str] = []
    for service in services:
        for path in service.__mapping__():
            name = split_path(path)[0]
            if name and name not in names:
                names.append(name)
    return names


def import_descriptor_modules(services: Iterable[Any]) -> None:
    """Import the ``_pb2`` module beside each service's generated ``_grpc`` module.

    A generated ``x_grpc`` module imports the modules of the *messages* its
    methods use; when ``x.proto`` declares only services (like grpc's
    ``test.proto``), nothing imports ``x_pb2``, so the service descriptor
    never reaches the default pool and reflection could not describe it.
    Best effort: services not built on generated code are left alone.
    """
    for service in services:
        for cls in type(service).__mro__:
            module = getattr(cls, "__module__", "") or ""
            if not module.endswith("_grpc"):
                continue
            name = module[: -len("_grpc")] + "_pb2"
            if name in sys.modules:
                break
            try:
                importlib.import_module(name)
            except ImportError as exc:
                log.debug("reflection: no descriptor module %s for %r: %s", name, service, exc)
            break


class _NotFound(Exception):
    pass


class Reflector:
    """Answers reflection requests from a descriptor pool, for either protocol version.

    ``pb2`` is the version's message module; requests and answers are built
    from it, everything else is shared.
    """

    def __init__(self, service_names: Collection[str], pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self.service_names = tuple(service_names)
        self.pool = pool if pool is not None else descriptor_pool.Default()

    def answer(self, request: Any, pb2: ModuleType) -> Any:
        """The ``ServerReflectionResponse`` (of ``pb2``) for one request."""
        kind = request.WhichOneof("message_request")
        response = pb2.ServerReflectionResponse(valid_host=request.host, original_request=request)
        try:
            if kind == "list_services":
                services = [pb2.ServiceResponse(name=name) for name in self.service_names]
                response.list_services_response.service.extend(services)
            elif kind == "file_by_filename":
                self._files(response, self._find(self.pool.FindFileByName, request.file_by_filename, "file"))
            elif kind == "file_containing_symbol":
                self._files(response, self._file_containing_symbol(request.file_containing_symbol))
            elif kind == "file_containing_extension":
                ext = request.file_containing_extension
                self._files(response, self._file_containing_extension(ext.containing_type, ext.extension_number))
            elif kind == "all_extension_numbers_of_type":
                name = request.all_extension_numbers_of_type
                message = self._find(self.pool.FindMessageTypeByName, name, "message type")
                numbers = sorted(ext.number for ext in self.pool.FindAllExtensions(message))
                response.all_extension_numbers_response.base_type_name = message.full_name
                response.all_extension_numbers_response.extension_number.extend(numbers)
            else:
                log.info("reflection request with no known request field: %r", request)
                response.error_response.error_code = Status.INVALID_ARGUMENT.value
                response.error_response.error_message = "the request sets no known message_request field"
        except _NotFound as exc:
            response.error_response.error_code = Status.NOT_FOUND.value
            response.error_response.error_message = str(exc)
        return response

    # -- lookups -----------------------------------------------------------

    @staticmethod
    def _find(lookup: Any, name: str, what: str) -> Any:
        try:
            return lookup(name)
        except KeyError:
            raise _NotFound(f"{what} not found: {name}") from None

    def _file_containing_symbol(self, symbol: str) -> FileDescriptor:
        try:
            file: FileDescriptor = self.pool.FindFileContainingSymbol(symbol)
            return file
        except KeyError:
            pass
        # The spec allows <package>.<service>.<method>; protobuf's pool does not
        # index methods, so look the method up on its service.
        parent, _, method = symbol.rpartition(".")
        if parent and method:
            try:
                service = self.pool.FindServiceByName(parent)
            except KeyError:
                pass
            else:
                if method in service.methods_by_name:
                    return service.file
        raise _NotFound(f"symbol not found: {symbol}")

    def _file_containing_extension(self, containing_type: str, number: int) -> FileDescriptor:
        message = self._find(self.pool.FindMessageTypeByName, containing_type, "message type")
        try:
            extension = self.pool.FindExtensionByNumber(message, number)
        except KeyError:
            raise _NotFound(f"extension {number} of {containing_type} not found") from None
        return self._file_containing_symbol(extension.full_name)

    def _files(self, response: Any, file: FileDescriptor) -> None:
        serialized = [_serialize(f) for f in _with_dependencies(file)]
        response.file_descriptor_response.file_descriptor_proto.extend(serialized)


def _with_dependencies(file: FileDescriptor) -> list[FileDescriptor]:
    """``file`` then its transitive dependencies, each once (depth-first)."""
    seen: dict[str, FileDescriptor] = {}
    stack = [file]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen[current.name] = current
        stack.extend(reversed(current.dependencies))
    return list(seen.values())


def _serialize(file: FileDescriptor) -> bytes:
    serialized: bytes | None = getattr(file, "serialized_pb", None)
    if serialized:
        return serialized
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto.SerializeToString()


async def _serve(reflector: Reflector, pb2: ModuleType, stream: Stream[Any, Any]) -> None:
    async for request in stream:
        await stream.send_message(reflector.answer(request, pb2))


class ServerReflection(v1_grpc.ServerReflectionBase):
    """The ``grpc.reflection.v1`` service.

    Usually added with :meth:`extend`, which serves ``v1alpha`` too.
    ``service_names`` is what ``list_services`` answers; ``pool`` defaults to
    protobuf's default descriptor pool.
    """

    def __init__(
        self,
        service_names: Collection[str],
        *,
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self.reflector = Reflector(service_names, pool)

    async def ServerReflectionInfo(
        self, stream: Stream[v1_pb2.ServerReflectionRequest, v1_pb2.ServerReflectionResponse]
    ) -> None:
        await _serve(self.reflector, v1_pb2, stream)

    @classmethod
    def extend(
        cls,
        services: Collection[Any],
        *,
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> list[Any]:
        """``services`` plus reflection (v1 and v1alpha) describing them::

            services = ServerReflection.extend([Greeter()])
            server = Server(services)

        The listed service names are taken from the services' ``__mapping__``
        paths, plus the two reflection services themselves. With the default
        pool, the ``_pb2`` module of each generated service is imported so
        its service descriptor is there (see :func:`import_descriptor_modules`).
        """
        services = list(services)
        names = service_names(services)
        if pool is None:
            import_descriptor_modules(services)
        for name in (SERVICE_NAME, SERVICE_NAME_V1ALPHA):
            if name not in names:
                names.append(name)
        return [*services, cls(names, pool=pool), ServerReflectionV1Alpha(names, pool=pool)]


class ServerReflectionV1Alpha(v1alpha_grpc.ServerReflectionBase):
    """The ``grpc.reflection.v1alpha`` service (what grpcio-reflection's client speaks)."""

    def __init__(
        self,
        service_names: Collection[str],
        *,
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self.reflector = Reflector(service_names, pool)

    async def ServerReflectionInfo(
        self, stream: Stream[v1alpha_pb2.ServerReflectionRequest, v1alpha_pb2.ServerReflectionResponse]
    ) -> None:
        await _serve(self.reflector, v1alpha_pb2, stream)
