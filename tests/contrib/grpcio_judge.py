"""grpcio's own health and reflection clients, driven line by line from a test.

Run as ``python grpcio_judge.py PORT``. It reads one JSON command per line on
stdin and answers each with one JSON line on stdout. It is a separate process
because grpcio-health-checking and grpcio-reflection register the same proto
symbols (``grpc.health.v1.*``, ``grpc.reflection.v1alpha.*``) as grpcasgi's
generated modules, and protobuf's default pool refuses duplicates.

Commands (``op`` plus arguments):

* ``check`` ``service`` → ``{"status": "SERVING"}`` or ``{"code": "NOT_FOUND"}``
* ``watch`` ``service`` ``id`` → opens a Watch stream, answers ``{}``
* ``next`` ``id`` → the next Watch message ``{"status": ...}`` or, when the
  stream ends, ``{"end": "OK"}`` (the final status code name)
* ``cancel`` ``id`` → cancels the Watch
* ``db`` ``version`` (``v1alpha``/``v1``) ``services`` ``messages`` ``files``
  ``extensions`` → grpcio-reflection's ``ProtoReflectionDescriptorDatabase``
  behind a ``DescriptorPool``: the listed services, and what resolving the
  given names yields (``null`` where the pool raised KeyError)
* ``raw`` ``version`` ``requests`` → one ServerReflectionInfo stream over
  grpcio's generated stub for that version; each response as a dict, with
  ``file_descriptor_proto`` decoded to file names
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V1_PROTO = "grpcasgi/contrib/protos/grpc/reflection/v1/reflection.proto"
V1_PATH = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def v1_modules() -> tuple[Any, Any]:
    """grpcio-reflection 1.85 ships only v1alpha; generate grpcio's v1 stub with grpc_tools.

    The ``_pb2_grpc`` module is grpc_tools' output for the v1 proto; it imports
    the message module protoc generated for the same file (grpcasgi's
    committed ``reflection_pb2``, which is plain protoc output).
    """
    out = tempfile.mkdtemp(prefix="grpcio-judge-")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO}", f"--grpc_python_out={out}", V1_PROTO],
        check=True,
    )
    path = os.path.join(out, V1_PROTO.replace(".proto", "_pb2_grpc.py"))
    spec = importlib.util.spec_from_file_location("judge_v1_reflection_pb2_grpc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from grpcasgi.contrib.protos.grpc.reflection.v1 import reflection_pb2 as v1_pb2

    return v1_pb2, module


class Judge:
    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.watches: dict[str, Any] = {}
        self._v1: tuple[Any, Any] | None = None

    def check(self, service: str) -> dict[str, Any]:
        try:
            reply = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        except grpc.RpcError as exc:
            return {"code": exc.code().name, "details": exc.details()}
        return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}

    def watch(self, service: str, id: str) -> dict[str, Any]:
        self.watches[id] = self.health.Watch(health_pb2.HealthCheckRequest(service=service), timeout=30)
        return {}

    def next(self, id: str) -> dict[str, Any]:
        call = self.watches[id]
        try:
            reply = next(call)
        except StopIteration:
            return {"end": call.code().name}
        except grpc.RpcError as exc:
            return {"end": exc.code().name, "details": exc.details()}
        return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}

    def cancel(self, id: str) -> dict[str, Any]:
        self.watches.pop(id).cancel()
        return {}

    def db(
        self,
        version: str,
        services: Sequence[str] = (),
        messages: Sequence[str] = (),
        files: Sequence[str] = (),
        extensions: Sequence[Sequence[Any]] = (),
    ) -> dict[str, Any]:
        database = ProtoReflectionDescriptorDatabase(self.channel)
        if version == "v1":
            # Same messages on the wire, another package: point grpcio's
            # reference client at the v1 method.
            database._stub.ServerReflectionInfo = self.channel.stream_stream(
                V1_PATH,
                request_serializer=v1alpha_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=v1alpha_pb2.ServerReflectionResponse.FromString,
            )
        pool = descriptor_pool.DescriptorPool(database)
        result: dict[str, Any] = {"listed": sorted(database.get_services()), "services": {}, "messages": {}}
        for name in services:
            try:
                svc = pool.FindServiceByName(name)
            except KeyError:
                result["services"][name] = None
                continue
            result["services"][name] = {
                "file": svc.file.name,
                "methods": {
                    m.name: [m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming]
                    for m in svc.methods
                },
            }
        for name in messages:
            try:
                msg = pool.FindMessageTypeByName(name)
            except KeyError:
                result["messages"][name] = None
                continue
            result["messages"][name] = [f.name for f in msg.fields]
        result["files"] = {}
        for name in files:
            try:
                result["files"][name] = pool.FindFileByName(name).package
            except KeyError:
                result["files"][name] = None
        result["extensions"] = {}
        for extendee, number in extensions:
            key = f"{extendee}:{number}"
            try:
                msg = pool.FindMessageTypeByName(extendee)
                result["extensions"][key] = pool.FindExtensionByNumber(msg, number).full_name
            except KeyError:
                result["extensions"][key] = None
            result["extensions"][f"{extendee}:all"] = sorted(database.FindAllExtensionNumbers(extendee))
        return result

    def raw(self, version: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
        if version == "v1":
            if self._v1 is None:
                self._v1 = v1_modules()
            pb2, pb2_grpc = self._v1
        else:
            pb2, pb2_grpc = v1alpha_pb2, v1alpha_pb2_grpc
        stub = pb2_grpc.ServerReflectionStub(self.channel)
        messages = [json_format.ParseDict(r, pb2.ServerReflectionRequest()) for r in requests]
        responses = []
        for response in stub.ServerReflectionInfo(iter(messages), timeout=10):
            as_dict = json_format.MessageToDict(response, preserving_proto_field_name=True)
            fdr = as_dict.get("file_descriptor_response")
            if fdr is not None:
                names = []
                for blob in response.file_descriptor_response.file_descriptor_proto:
                    fdp = descriptor_pb2.FileDescriptorProto.FromString(blob)
                    names.append(fdp.name)
                fdr["file_descriptor_proto"] = names
            responses.append(as_dict)
        return {"responses": responses}


def main() -> None:
    judge = Judge(int(sys.argv[1]))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            result = getattr(judge, op)(**command)
        except Exception as exc:  # report, keep serving the test
            result = {"error": repr(exc)}
        print(json.dumps(result), flush=True)
    judge.channel.close()


if __name__ == "__main__":
    main()
