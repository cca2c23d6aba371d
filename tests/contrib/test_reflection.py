"""Server reflection (v1 and v1alpha) over a real loopback server.

grpcio-reflection's ``ProtoReflectionDescriptorDatabase`` (and grpcio stubs
for the raw protocol) judge it from a subprocess (``grpcio_judge.py``); our
own client checks every request kind, error answers inside the stream and
transitive dependencies, against a custom descriptor pool and the default one.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from health_reflection_helpers import no_leaked_tasks  # noqa: F401  (autouse fixture)
from health_reflection_helpers import channel_to, example_server, grpcio_judge, run_example_client, serving

from grpcasgi.const import Cardinality, Handler, Status
from grpcasgi.contrib.health import Health
from grpcasgi.contrib.protos.grpc.reflection.v1 import reflection_grpc as v1_grpc
from grpcasgi.contrib.protos.grpc.reflection.v1 import reflection_pb2 as v1_pb2
from grpcasgi.contrib.protos.grpc.reflection.v1alpha import reflection_grpc as v1alpha_grpc
from grpcasgi.contrib.protos.grpc.reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpcasgi.contrib.reflection import ServerReflection, ServerReflectionV1Alpha
from grpcasgi.interop.server import make_services

VERSIONS = {"v1": (v1_pb2, v1_grpc), "v1alpha": (v1alpha_pb2, v1alpha_grpc)}
REFLECTION_NAMES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]

F = descriptor_pb2.FieldDescriptorProto


def _custom_pool() -> descriptor_pool.DescriptorPool:
    """A pool the default one knows nothing of: extensions and a diamond of imports.

    ``acme/store.proto`` imports ``acme/ext.proto`` and ``acme/base.proto``;
    ``acme/ext.proto`` imports ``acme/base.proto`` and extends ``acme.Base``.
    """
    base = descriptor_pb2.FileDescriptorProto(name="acme/base.proto", package="acme", syntax="proto2")
    msg = base.message_type.add(name="Base")
    msg.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    msg.extension_range.add(start=100, end=200)

    ext = descriptor_pb2.FileDescriptorProto(
        name="acme/ext.proto", package="acme.ext", syntax="proto2", dependency=["acme/base.proto"]
    )
    ext.extension.add(name="weight", number=100, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL, extendee=".acme.Base")
    ext.extension.add(name="tag", number=150, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, extendee=".acme.Base")
    payload = ext.message_type.add(name="Payload")
    payload.field.add(name="base", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=".acme.Base")
    payload.field.add(name="note", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)

    store = descriptor_pb2.FileDescriptorProto(
        name="acme/store.proto", package="acme", syntax="proto3", dependency=["acme/ext.proto", "acme/base.proto"]
    )
    svc = store.service.add(name="Store")
    svc.method.add(name="Get", input_type=".acme.ext.Payload", output_type=".acme.ext.Payload")
    svc.method.add(name="Follow", input_type=".acme.ext.Payload", output_type=".acme.ext.Payload", server_streaming=True)

    pool = descriptor_pool.DescriptorPool()
    for fdp in (base, ext, store):
        pool.AddSerializedFile(fdp.SerializeToString())
    return pool


class Store:
    """A service whose messages exist only in the custom pool."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self.payload = message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.ext.Payload"))

    async def Get(self, stream: Any) -> None:
        await stream.send_message(await stream.recv_message())

    async def Follow(self, stream: Any) -> None:
        await stream.send_message(await stream.recv_message())

    def __mapping__(self) -> dict[str, Handler]:
        p = self.payload
        return {
            "/acme.Store/Get": Handler(self.Get, Cardinality.UNARY_UNARY, p, p),
            "/acme.Store/Follow": Handler(self.Follow, Cardinality.UNARY_STREAM, p, p),
        }


@pytest.fixture
def pool() -> descriptor_pool.DescriptorPool:
    return _custom_pool()


def _file_names(response: Any) -> list[str]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(blob).name
        for blob in response.file_descriptor_response.file_descriptor_proto
    ]


# -- our client, every request kind ----------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_every_request_kind(version: str, pool: descriptor_pool.DescriptorPool) -> None:
    pb2, grpc_mod = VERSIONS[version]
    R = pb2.ServerReflectionRequest
    ext_req = pb2.ExtensionRequest
    requests = [
        R(host="example.com", list_services=""),
        R(file_containing_symbol="acme.Store"),
        R(file_by_filename="acme/ext.proto"),
        R(file_containing_symbol="acme.Store.Follow"),  # a method
        R(file_containing_symbol="acme.ext.Payload.note"),  # a field
        R(file_containing_symbol="acme.Nope"),
        R(file_by_filename="acme/nope.proto"),
        R(file_containing_extension=ext_req(containing_type="acme.Base", extension_number=150)),
        R(file_containing_extension=ext_req(containing_type="acme.Base", extension_number=101)),
        R(file_containing_extension=ext_req(containing_type="acme.Nope", extension_number=100)),
        R(all_extension_numbers_of_type="acme.Base"),
        R(all_extension_numbers_of_type="acme.Nope"),
        R(),
        R(list_services="after the errors, the stream still answers"),
    ]
    async with serving(ServerReflection.extend([Store(pool)], pool=pool)) as server, channel_to(server) as channel:
        stub = grpc_mod.ServerReflectionStub(channel)
        responses = await stub.ServerReflectionInfo(requests, timeout=10)

    assert len(responses) == len(requests)
    for request, response in zip(requests, responses):
        assert response.original_request == request
        assert response.valid_host == request.host
    kinds = [r.WhichOneof("message_response") for r in responses]
    (listed, store, ext, method, field, nope_sym, nope_file, ext150, ext101, ext_nope, numbers, nope_numbers,
     empty, listed_again) = responses

    assert [s.name for s in listed.list_services_response.service] == ["acme.Store", *REFLECTION_NAMES]
    assert listed_again.list_services_response == listed.list_services_response
    # The requested file first, then its transitive dependencies, each once.
    assert _file_names(store) == ["acme/store.proto", "acme/ext.proto", "acme/base.proto"]
    assert _file_names(ext) == ["acme/ext.proto", "acme/base.proto"]
    assert _file_names(method) == _file_names(store)
    assert _file_names(field) == _file_names(ext)
    assert _file_names(ext150) == _file_names(ext)
    parsed = descriptor_pb2.FileDescriptorProto.FromString(store.file_descriptor_response.file_descriptor_proto[0])
    assert [m.name for m in parsed.service[0].method] == ["Get", "Follow"]
    assert numbers.all_extension_numbers_response.base_type_name == "acme.Base"
    assert list(numbers.all_extension_numbers_response.extension_number) == [100, 150]

    for not_found in (nope_sym, nope_file, ext101, ext_nope, nope_numbers):
        assert not_found.WhichOneof("message_response") == "error_response"
        assert not_found.error_response.error_code == Status.NOT_FOUND.value
        assert not_found.error_response.error_message
    assert "acme.Nope" in nope_sym.error_response.error_message
    assert empty.error_response.error_code == Status.INVALID_ARGUMENT.value
    assert kinds.count("file_descriptor_response") == 5


async def test_default_pool_and_the_services_around_it() -> None:
    """Without a pool argument the default pool (generated _pb2 modules) answers."""
    services = ServerReflection.extend([Health()])
    assert [type(s) for s in services[1:]] == [ServerReflection, ServerReflectionV1Alpha]
    async with serving(services) as server, channel_to(server) as channel:
        stub = v1_grpc.ServerReflectionStub(channel)
        R = v1_pb2.ServerReflectionRequest
        listed, health, reflection, check = await stub.ServerReflectionInfo(
            [
                R(list_services=""),
                R(file_containing_symbol="grpc.health.v1.Health"),
                R(file_containing_symbol="grpc.reflection.v1alpha.ServerReflection"),
                R(file_containing_symbol="grpc.health.v1.Health.Check"),
            ],
            timeout=10,
        )
    assert [s.name for s in listed.list_services_response.service] == ["grpc.health.v1.Health", *REFLECTION_NAMES]
    assert _file_names(health) == ["grpcasgi/contrib/protos/grpc/health/v1/health.proto"]
    assert _file_names(check) == _file_names(health)
    assert _file_names(reflection) == ["grpcasgi/contrib/protos/grpc/reflection/v1alpha/reflection.proto"]


async def test_custom_pool_is_the_only_source(pool: descriptor_pool.DescriptorPool) -> None:
    """A custom pool does not leak the default pool's files (and vice versa)."""
    async with serving(ServerReflection.extend([Store(pool)], pool=pool)) as server, channel_to(server) as channel:
        stub = v1alpha_grpc.ServerReflectionStub(channel)
        R = v1alpha_pb2.ServerReflectionRequest
        (answer,) = await stub.ServerReflectionInfo([R(file_containing_symbol="grpc.health.v1.Health")], timeout=10)
    assert answer.error_response.error_code == Status.NOT_FOUND.value

    async with serving(ServerReflection.extend([Health()])) as server, channel_to(server) as channel:
        stub = v1alpha_grpc.ServerReflectionStub(channel)
        (answer,) = await stub.ServerReflectionInfo([R(file_containing_symbol="acme.Store")], timeout=10)
    assert answer.error_response.error_code == Status.NOT_FOUND.value


def test_extend_keeps_the_services_and_every_name() -> None:
    class Two:
        def __mapping__(self) -> dict[str, Any]:
            return {"/a.One/X": None, "/a.One/Y": None, "/a.Two/Z": None}

    original = [Two()]
    extended = ServerReflection.extend(original)
    assert extended[0] is original[0] and len(original) == 1
    assert extended[1].reflector.service_names == ("a.One", "a.Two", *REFLECTION_NAMES)
    assert extended[2].reflector.service_names == extended[1].reflector.service_names


# -- grpcio's clients as the judges ------------------------------------------------------


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_grpcio_descriptor_database(version: str, pool: descriptor_pool.DescriptorPool) -> None:
    """grpcio-reflection's ProtoReflectionDescriptorDatabase resolves our services.

    It speaks v1alpha; for v1 the judge points the same client at the v1
    method (the messages are identical on the wire).
    """
    async with serving(ServerReflection.extend([Store(pool)], pool=pool)) as server:
        async with grpcio_judge(server.port) as judge:
            result = await judge(
                "db",
                version=version,
                services=["acme.Store", "acme.Nope"],
                messages=["acme.ext.Payload", "acme.Base"],
                files=["acme/base.proto", "acme/nope.proto"],
                extensions=[["acme.Base", 150]],
            )
    assert result["listed"] == sorted(["acme.Store", *REFLECTION_NAMES])
    assert result["services"] == {
        "acme.Store": {
            "file": "acme/store.proto",
            "methods": {
                "Get": ["acme.ext.Payload", "acme.ext.Payload", False, False],
                "Follow": ["acme.ext.Payload", "acme.ext.Payload", False, True],
            },
        },
        "acme.Nope": None,
    }
    assert result["messages"] == {"acme.ext.Payload": ["base", "note"], "acme.Base": ["name"]}
    assert result["files"] == {"acme/base.proto": "acme", "acme/nope.proto": None}
    assert result["extensions"] == {"acme.Base:150": "acme.ext.tag", "acme.Base:all": [100, 150]}


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_grpcio_raw_stubs(version: str, pool: descriptor_pool.DescriptorPool) -> None:
    """grpcio's generated stub for each version: answers, errors inside the stream."""
    requests = [
        {"list_services": ""},
        {"file_containing_symbol": "acme.Nope"},
        {"file_containing_symbol": "acme.Store"},
        {"all_extension_numbers_of_type": "acme.Base"},
    ]
    async with serving(ServerReflection.extend([Store(pool)], pool=pool)) as server:
        async with grpcio_judge(server.port) as judge:
            result = await judge("raw", version=version, requests=requests)
    listed, nope, store, numbers = result["responses"]
    assert [s["name"] for s in listed["list_services_response"]["service"]] == ["acme.Store", *REFLECTION_NAMES]
    assert nope["error_response"]["error_code"] == Status.NOT_FOUND.value
    assert nope["original_request"] == {"file_containing_symbol": "acme.Nope"}
    assert store["file_descriptor_response"]["file_descriptor_proto"] == [
        "acme/store.proto",
        "acme/ext.proto",
        "acme/base.proto",
    ]
    assert numbers["all_extension_numbers_response"] == {"base_type_name": "acme.Base", "extension_number": [100, 150]}


# -- the interop server -------------------------------------------------------------------


async def test_interop_server_serves_health_and_reflection() -> None:
    """Also: extend() imports test_pb2 (the service-only file nothing else imports)."""
    async with serving(make_services()) as server:
        async with grpcio_judge(server.port) as judge:
            assert await judge("check", service="") == {"status": "SERVING"}
            assert await judge("check", service="grpc.testing.TestService") == {"status": "SERVING"}
            for version in ("v1alpha", "v1"):
                result = await judge(
                    "db",
                    version=version,
                    services=["grpc.testing.TestService", "grpc.health.v1.Health"],
                    messages=["grpc.testing.SimpleRequest"],
                )
                assert result["listed"] == sorted(
                    ["grpc.testing.TestService", "grpc.health.v1.Health", *REFLECTION_NAMES]
                )
                methods = result["services"]["grpc.testing.TestService"]["methods"]
                assert methods["UnaryCall"] == ["grpc.testing.SimpleRequest", "grpc.testing.SimpleResponse", False, False]
                assert methods["FullDuplexCall"][2:] == [True, True]
                assert set(result["services"]["grpc.health.v1.Health"]["methods"]) == {"Check", "Watch"}
                assert "response_size" in result["messages"]["grpc.testing.SimpleRequest"]
            await judge("watch", service="grpc.testing.TestService", id="w")
            assert await judge("next", id="w") == {"status": "SERVING"}
            server.close()
            assert await judge("next", id="w") == {"status": "NOT_SERVING"}
            assert await judge("next", id="w") == {"end": "OK"}


# -- the example -------------------------------------------------------------------------


async def test_example_server_and_client() -> None:
    async with example_server("reflection/server.py") as (port, _):
        lines = await run_example_client("reflection/client.py", "--port", str(port))
    assert lines[:3] == [
        "service helloworld.Greeter  (helloworld/helloworld.proto)",
        "  rpc SayHello(helloworld.HelloRequest) returns (helloworld.HelloReply)",
        "  rpc SayHellos(helloworld.HelloRequest) returns (stream helloworld.HelloReply)",
    ]
    services = [line.split()[1] for line in lines if line.startswith("service ")]
    assert services == ["helloworld.Greeter", "grpc.health.v1.Health", *REFLECTION_NAMES]
