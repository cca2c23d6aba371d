"""The protoc plugin (grpcasgi.plugin) and the committed generated modules."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to run protoc")

from google.protobuf.compiler import plugin_pb2  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _load_gen_protos() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("_grpcasgi_gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen_protos = _load_gen_protos()

# A top-level package name no other test uses (protos register globally).
PKG = "grpcasgi_codegen_test"

PROTOS = {
    f"{PKG}/common/types.proto": """
        syntax = "proto3";
        package grpcasgi_codegen_test.common;

        message Shared {
          string id = 1;
          message Inner { int32 x = 1; }
        }
    """,
    f"{PKG}/svc.proto": """
        syntax = "proto3";
        package grpcasgi_codegen_test.svc;

        import "grpcasgi_codegen_test/common/types.proto";
        import "google/protobuf/empty.proto";

        message Outer {
          message Nested { optional string v = 1; }
          Nested n = 1;
        }

        // All four cardinalities.
        // Docstring edge cases: "quotes", a backslash \\ and \"\"\"triple\"\"\" quotes"
        service Everything {
          // One request, one reply.
          rpc Unary (Outer.Nested) returns (grpcasgi_codegen_test.common.Shared) {}
          rpc ServerStream (grpcasgi_codegen_test.common.Shared.Inner) returns (stream Outer) {}
          rpc ClientStream (stream google.protobuf.Empty) returns (google.protobuf.Empty) {}
          rpc BidiStream (stream Outer) returns (stream Outer.Nested) {}
          rpc import (Outer) returns (Outer) {}
        }

        service Nothing {}
    """,
    "grpcasgi_codegen_nopkg.proto": """
        syntax = "proto3";

        message Ping { int32 seq = 1; }

        service Pinger {
          rpc Ping (.Ping) returns (.Ping);
        }
    """,
}

# Message names that are Python keywords: protoc's own pyi output for them is
# not valid Python, so this file is generated without --pyi_out and is not
# type checked.
KEYWORD_PROTO = (
    f"{PKG}_kw/kw.proto",
    """
    syntax = "proto3";
    package grpcasgi_codegen_test.kw;

    message class { message None { int32 x = 1; } }

    service Keywords {
      rpc pass (class) returns (class.None);
      rpc pass_ (class.None) returns (class);
    }
    """,
)


@pytest.fixture(scope="module")
def plugin() -> Iterator[Path]:
    with gen_protos.plugin_wrapper() as path:
        yield path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, plugin: Path) -> Iterator[Path]:
    """Protos compiled (python, pyi, grpcasgi) into a directory put on sys.path."""
    root = tmp_path_factory.mktemp("codegen")
    for name, text in PROTOS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    gen_protos.protoc(sorted(PROTOS), cwd=root, out=root, plugin=plugin)
    kw_name, kw_text = KEYWORD_PROTO
    (root / kw_name).parent.mkdir(parents=True, exist_ok=True)
    (root / kw_name).write_text(textwrap.dedent(kw_text))
    gen_protos.protoc([kw_name], cwd=root, out=root, plugin=plugin, pyi=False)

    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))


class _Recorder:
    """Stands in for a client method class and records its constructor arguments."""

    def __init__(self, channel: Any, name: str, request_type: Any, reply_type: Any) -> None:
        self.args = (channel, name, request_type, reply_type)


def _client_module() -> types.ModuleType:
    """grpcasgi.client, or (until it exists) a minimal stand-in with the names generated code uses."""
    if importlib.util.find_spec("grpcasgi.client") is not None:
        return importlib.import_module("grpcasgi.client")
    fake = types.ModuleType("grpcasgi.client")
    for name in ("Channel", "UnaryUnaryMethod", "UnaryStreamMethod", "StreamUnaryMethod", "StreamStreamMethod"):
        setattr(fake, name, type(name, (_Recorder,), {}))
    return fake


@pytest.fixture
def client_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = _client_module()
    monkeypatch.setitem(sys.modules, "grpcasgi.client", module)
    import grpcasgi

    monkeypatch.setattr(grpcasgi, "client", module, raising=False)
    return module


@pytest.fixture
def modules(generated: Path, client_module: types.ModuleType) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        svc_grpc=importlib.import_module(f"{PKG}.svc_grpc"),
        svc_pb2=importlib.import_module(f"{PKG}.svc_pb2"),
        types_pb2=importlib.import_module(f"{PKG}.common.types_pb2"),
        nopkg_grpc=importlib.import_module("grpcasgi_codegen_nopkg_grpc"),
        nopkg_pb2=importlib.import_module("grpcasgi_codegen_nopkg_pb2"),
        kw_grpc=importlib.import_module(f"{PKG}_kw.kw_grpc"),
        kw_pb2=importlib.import_module(f"{PKG}_kw.kw_pb2"),
    )


def _concrete(base: type) -> Any:
    """A subclass of a generated ``<Service>Base`` implementing every method."""

    async def handler(self: Any, stream: Any) -> None:
        pass

    methods = {name: handler for name in getattr(base, "__abstractmethods__")}
    return type(f"Concrete{base.__name__}", (base,), methods)()


# -- the generated modules ---------------------------------------------------------


def test_outputs_next_to_pb2(generated: Path) -> None:
    for stem in (f"{PKG}/svc", f"{PKG}/common/types", "grpcasgi_codegen_nopkg", f"{PKG}_kw/kw"):
        assert (generated / f"{stem}_pb2.py").is_file()
        assert (generated / f"{stem}_grpc.py").is_file()
    # Files without services get the header only.
    text = (generated / f"{PKG}/common/types_grpc.py").read_text()
    assert text.startswith("# Generated by the Protocol Buffers compiler. DO NOT EDIT!\n")
    assert "import" not in text


def test_header_and_imports(generated: Path) -> None:
    text = (generated / f"{PKG}/svc_grpc.py").read_text()
    assert text.splitlines()[:3] == [
        "# Generated by the Protocol Buffers compiler. DO NOT EDIT!",
        f"# source: {PKG}/svc.proto",
        "# plugin: grpcasgi.plugin.main",
    ]
    for line in (
        "import grpcasgi.const",
        "import grpcasgi.client",
        "    import grpcasgi.server",
        f"import {PKG}.svc_pb2",
        f"import {PKG}.common.types_pb2",
        "import google.protobuf.empty_pb2",
    ):
        assert line in text.splitlines()


def test_mapping(modules: types.SimpleNamespace) -> None:
    from grpcasgi.const import Cardinality, Handler

    svc, pb2, common = modules.svc_grpc, modules.svc_pb2, modules.types_pb2
    from google.protobuf import empty_pb2

    service = _concrete(svc.EverythingBase)
    mapping = service.__mapping__()
    prefix = "/grpcasgi_codegen_test.svc.Everything/"
    assert mapping == {
        prefix + "Unary": Handler(service.Unary, Cardinality.UNARY_UNARY, pb2.Outer.Nested, common.Shared),
        prefix + "ServerStream": Handler(
            service.ServerStream, Cardinality.UNARY_STREAM, common.Shared.Inner, pb2.Outer
        ),
        prefix + "ClientStream": Handler(
            service.ClientStream, Cardinality.STREAM_UNARY, empty_pb2.Empty, empty_pb2.Empty
        ),
        prefix + "BidiStream": Handler(service.BidiStream, Cardinality.STREAM_STREAM, pb2.Outer, pb2.Outer.Nested),
        prefix + "import": Handler(getattr(service, "import_"), Cardinality.UNARY_UNARY, pb2.Outer, pb2.Outer),
    }
    assert all(type(h) is Handler for h in mapping.values())
    assert _concrete(svc.NothingBase).__mapping__() == {}


def test_base_is_abstract(modules: types.SimpleNamespace) -> None:
    base = modules.svc_grpc.EverythingBase
    assert base.__abstractmethods__ == frozenset({"Unary", "ServerStream", "ClientStream", "BidiStream", "import_"})
    with pytest.raises(TypeError):
        base()


def test_no_package(modules: types.SimpleNamespace) -> None:
    from grpcasgi.const import Cardinality

    service = _concrete(modules.nopkg_grpc.PingerBase)
    ((path, handler),) = service.__mapping__().items()
    assert path == "/Pinger/Ping"
    assert handler.cardinality is Cardinality.UNARY_UNARY
    assert handler.request_type is handler.reply_type is modules.nopkg_pb2.Ping


def test_keyword_names(modules: types.SimpleNamespace) -> None:
    kw_class = getattr(modules.kw_pb2, "class")
    kw_none = getattr(kw_class, "None")
    service = _concrete(modules.kw_grpc.KeywordsBase)
    assert set(type(service).__abstractmethods__) == set()
    assert set(modules.kw_grpc.KeywordsBase.__abstractmethods__) == {"pass__", "pass_"}
    mapping = service.__mapping__()
    first, second = mapping["/grpcasgi_codegen_test.kw.Keywords/pass"], mapping["/grpcasgi_codegen_test.kw.Keywords/pass_"]
    assert (first.func, first.request_type, first.reply_type) == (getattr(service, "pass__"), kw_class, kw_none)
    assert (second.func, second.request_type, second.reply_type) == (service.pass_, kw_none, kw_class)


def test_docstrings(modules: types.SimpleNamespace) -> None:
    import inspect

    svc = modules.svc_grpc
    expected = 'All four cardinalities.\nDocstring edge cases: "quotes", a backslash \\ and """triple""" quotes"'
    assert inspect.getdoc(svc.EverythingBase) == expected
    assert inspect.getdoc(svc.EverythingStub) == expected
    assert inspect.getdoc(svc.EverythingBase.Unary) == "One request, one reply."
    assert svc.EverythingBase.ServerStream.__doc__ is None


def test_stub_constructs_client_methods(
    modules: types.SimpleNamespace, client_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorders = {
        name: type(name, (_Recorder,), {})
        for name in ("UnaryUnaryMethod", "UnaryStreamMethod", "StreamUnaryMethod", "StreamStreamMethod")
    }
    for name, cls in recorders.items():
        monkeypatch.setattr(client_module, name, cls)
    from google.protobuf import empty_pb2

    pb2, common = modules.svc_pb2, modules.types_pb2
    channel = object()
    stub = modules.svc_grpc.EverythingStub(channel)
    prefix = "/grpcasgi_codegen_test.svc.Everything/"
    expected = {
        "Unary": ("UnaryUnaryMethod", (channel, prefix + "Unary", pb2.Outer.Nested, common.Shared)),
        "ServerStream": ("UnaryStreamMethod", (channel, prefix + "ServerStream", common.Shared.Inner, pb2.Outer)),
        "ClientStream": ("StreamUnaryMethod", (channel, prefix + "ClientStream", empty_pb2.Empty, empty_pb2.Empty)),
        "BidiStream": ("StreamStreamMethod", (channel, prefix + "BidiStream", pb2.Outer, pb2.Outer.Nested)),
        "import_": ("UnaryUnaryMethod", (channel, prefix + "import", pb2.Outer, pb2.Outer)),
    }
    assert set(vars(stub)) == set(expected)
    for attr, (cls_name, args) in expected.items():
        method: Any = getattr(stub, attr)
        assert method.args == args
        assert type(method) is recorders[cls_name]
    assert vars(modules.svc_grpc.NothingStub(channel)) == {}


async def test_stub_with_real_client(modules: types.SimpleNamespace, client_module: types.ModuleType) -> None:
    if not hasattr(client_module, "__file__"):
        pytest.skip("grpcasgi.client does not exist yet")
    channel = client_module.Channel("127.0.0.1", 1)
    try:
        stub = modules.svc_grpc.EverythingStub(channel)
        assert type(stub.Unary) is client_module.UnaryUnaryMethod
        assert type(stub.ServerStream) is client_module.UnaryStreamMethod
        assert type(stub.ClientStream) is client_module.StreamUnaryMethod
        assert type(stub.BidiStream) is client_module.StreamStreamMethod
    finally:
        channel.close()


def test_cardinality_names_exist() -> None:
    from grpcasgi import const
    from grpcasgi.plugin import main as plugin_main

    for cardinality, client_class in plugin_main._CARDINALITY.values():
        assert hasattr(const.Cardinality, cardinality)
        assert client_class.startswith("grpcasgi.client.")
    assert plugin_main.HANDLER == "grpcasgi.const.Handler"
    assert plugin_main.SERVER_STREAM == "grpcasgi.server.Stream"


# -- type checking ------------------------------------------------------------------

USAGE = f"""
from google.protobuf import empty_pb2

import grpcasgi.server
from grpcasgi.client import Channel
from {PKG}.common.types_pb2 import Shared
from {PKG}.svc_grpc import EverythingBase, EverythingStub, NothingBase, NothingStub
from {PKG}.svc_pb2 import Outer
from grpcasgi_codegen_nopkg_grpc import PingerStub
from grpcasgi_codegen_nopkg_pb2 import Ping


class Everything(EverythingBase):
    async def Unary(self, stream: grpcasgi.server.Stream[Outer.Nested, Shared]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(Shared(id=request.v))

    async def ServerStream(self, stream: grpcasgi.server.Stream[Shared.Inner, Outer]) -> None:
        pass

    async def ClientStream(self, stream: grpcasgi.server.Stream[empty_pb2.Empty, empty_pb2.Empty]) -> None:
        pass

    async def BidiStream(self, stream: grpcasgi.server.Stream[Outer, Outer.Nested]) -> None:
        pass

    async def import_(self, stream: grpcasgi.server.Stream[Outer, Outer]) -> None:
        pass


class Nothing(NothingBase):
    pass


async def call(channel: Channel) -> str:
    stub = EverythingStub(channel)
    reply = await stub.Unary(Outer.Nested(v="x"))
    ping = await PingerStub(channel).Ping(Ping(seq=1))
    NothingStub(channel)
    return reply.id + str(ping.seq)


mapping = {{**Everything().__mapping__(), **Nothing().__mapping__()}}
"""

# Strict for the generated _grpc modules and the code using them.  The pb2
# stubs are protoc's --pyi_out output (bare ``Mapping``, subclasses of
# ``Message``, which is ``Any`` without types-protobuf): not ours to check.
MYPY_INI = f"""\
[mypy]
strict = True
follow_imports = silent

[mypy-google.*]
ignore_missing_imports = True

[mypy-{PKG}.svc_pb2,{PKG}.common.types_pb2,grpcasgi_codegen_nopkg_pb2]
disallow_subclassing_any = False
disallow_any_generics = False
"""


@pytest.mark.timeout(600)
def test_mypy_strict(generated: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed")
    if importlib.util.find_spec("grpcasgi.client") is None:
        pytest.skip("grpcasgi.client does not exist yet: generated stubs reference grpcasgi.client.*Method")
    (generated / "usage.py").write_text(USAGE)
    (tmp_path / "mypy.ini").write_text(MYPY_INI)
    files = [f"{PKG}/svc_grpc.py", f"{PKG}/common/types_grpc.py", "grpcasgi_codegen_nopkg_grpc.py", "usage.py"]
    env = dict(os.environ)
    env["MYPYPATH"] = str(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
            "--explicit-package-bases",
            *files,
        ],
        cwd=generated,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the plugin as a program ----------------------------------------------------------


def test_python_m_grpcasgi_plugin() -> None:
    """``python -m grpcasgi.plugin`` speaks the protoc plugin protocol."""
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto(name="a/b-c.proto", package="p", syntax="proto3")
    proto.message_type.add(name="M")
    service = proto.service.add(name="S")
    service.method.add(name="Call", input_type=".p.M", output_type=".p.M", server_streaming=True)
    request = plugin_pb2.CodeGeneratorRequest(file_to_generate=["a/b-c.proto"], proto_file=[proto])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "grpcasgi.plugin"],
        input=request.SerializeToString(),
        capture_output=True,
        env=env,
        check=True,
    )
    response = plugin_pb2.CodeGeneratorResponse.FromString(proc.stdout)
    assert not response.error
    assert response.supported_features == plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    ((out,),) = [response.file]
    assert out.name == "a/b_c_grpc.py"
    assert "import a.b_c_pb2\n" in out.content
    assert "'/p.S/Call': grpcasgi.const.Handler(" in out.content
    assert "grpcasgi.const.Cardinality.UNARY_STREAM," in out.content
    assert "self.Call: grpcasgi.client.UnaryStreamMethod[a.b_c_pb2.M, a.b_c_pb2.M] = " in out.content
    compile(out.content, out.name, "exec")


def test_unknown_type_is_reported_as_error() -> None:
    from google.protobuf import descriptor_pb2

    from grpcasgi.plugin.main import generate

    proto = descriptor_pb2.FileDescriptorProto(name="x.proto", package="p")
    proto.service.add(name="S").method.add(name="M", input_type=".p.Missing", output_type=".p.Missing")
    response = generate(plugin_pb2.CodeGeneratorRequest(file_to_generate=["x.proto"], proto_file=[proto]))
    assert "unknown message type" in response.error
    assert not response.file


# -- committed generated code -------------------------------------------------------


def test_committed_generated_files_are_up_to_date() -> None:
    problems = gen_protos.check()
    stale = [f"{rel}: {why}" for rel, why in problems if "generated by protoc for protobuf" not in why]
    assert not stale, "run `python scripts/gen_protos.py`:\n" + "\n".join(stale)
    if problems:
        pytest.skip(
            "this grpcio-tools generates _pb2 files for a different protobuf version than the committed "
            "ones; the _grpc.py files are up to date: " + "; ".join(f"{rel}: {why}" for rel, why in problems)
        )


# Run in a subprocess: the grpc.health.v1 / grpc.reflection.* / grpc.testing
# messages must not land in this process's default descriptor pool, where they
# would clash with grpcio-health-checking's or grpcio-reflection's copies.
COMMITTED_IMPORT_CHECK = """
import importlib

from grpcasgi.const import Cardinality

for name in (
    "grpcasgi.interop.protos.grpc.testing.empty_pb2",
    "grpcasgi.interop.protos.grpc.testing.messages_pb2",
    "grpcasgi.interop.protos.grpc.testing.test_pb2",
    "grpcasgi.contrib.protos.grpc.health.v1.health_pb2",
    "grpcasgi.contrib.protos.grpc.reflection.v1.reflection_pb2",
    "grpcasgi.contrib.protos.grpc.reflection.v1alpha.reflection_pb2",
    "grpcasgi.interop.protos.grpc.testing.empty_grpc",
    "grpcasgi.interop.protos.grpc.testing.messages_grpc",
    "grpcasgi.interop.protos.grpc.testing.test_grpc",
    "grpcasgi.contrib.protos.grpc.health.v1.health_grpc",
    "grpcasgi.contrib.protos.grpc.reflection.v1.reflection_grpc",
    "grpcasgi.contrib.protos.grpc.reflection.v1alpha.reflection_grpc",
):
    importlib.import_module(name)

from grpcasgi.interop.protos.grpc.testing import test_grpc, test_pb2
from grpcasgi.contrib.protos.grpc.health.v1 import health_grpc, health_pb2


def concrete(base):
    async def handler(self, stream):
        pass

    return type("Concrete", (base,), {name: handler for name in base.__abstractmethods__})()


service = test_pb2.DESCRIPTOR.services_by_name["TestService"]
assert service.full_name == "grpc.testing.TestService"
assert service.methods_by_name["UnaryCall"].input_type.full_name == "grpc.testing.SimpleRequest"
mapping = concrete(test_grpc.TestServiceBase).__mapping__()
assert mapping["/grpc.testing.TestService/FullDuplexCall"].cardinality is Cardinality.STREAM_STREAM
mapping = concrete(health_grpc.HealthBase).__mapping__()
assert mapping["/grpc.health.v1.Health/Watch"][1:] == (
    Cardinality.UNARY_STREAM, health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
)
print("ok")
"""


def test_committed_modules_import() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", COMMITTED_IMPORT_CHECK], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stdout + proc.stderr
