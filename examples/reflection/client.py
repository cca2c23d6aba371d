"""A tiny ``grpcurl list`` + ``describe`` over grpc.reflection.v1 with grpcasgi's client.

    python examples/reflection/client.py --port 50051

Lists the server's services, then for each one asks for the file that
declares it (the answer carries its dependencies too), loads the files into
a fresh descriptor pool and prints every method's signature. Nothing about
the server's protos needs to be known in advance.
"""

from __future__ import annotations

import argparse
import asyncio

from google.protobuf import descriptor_pb2, descriptor_pool

from grpcasgi.client import Channel
from grpcasgi.contrib.protos.grpc.reflection.v1.reflection_grpc import ServerReflectionStub
from grpcasgi.contrib.protos.grpc.reflection.v1.reflection_pb2 import ServerReflectionRequest


async def main(*, host: str, port: int) -> None:
    async with Channel(host, port) as channel:
        reflection = ServerReflectionStub(channel)
        (listed,) = await reflection.ServerReflectionInfo([ServerReflectionRequest(list_services="")], timeout=5)
        names = [service.name for service in listed.list_services_response.service]
        answers = await reflection.ServerReflectionInfo(
            [ServerReflectionRequest(file_containing_symbol=name) for name in names], timeout=5
        )

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for answer in answers:
        for blob in answer.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
            files.setdefault(proto.name, proto)
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:  # dependencies first
        if name in added:
            return
        for dependency in files[name].dependency:
            add(dependency)
        pool.Add(files[name])
        added.add(name)

    for name in files:
        add(name)

    for name in names:
        service = pool.FindServiceByName(name)
        print(f"service {name}  ({service.file.name})")
        for method in service.methods:
            request = f"stream {method.input_type.full_name}" if method.client_streaming else method.input_type.full_name
            reply = f"stream {method.output_type.full_name}" if method.server_streaming else method.output_type.full_name
            print(f"  rpc {method.name}({request}) returns ({reply})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    args = parser.parse_args()
    asyncio.run(main(host=args.host, port=args.port))
