"""The ``protoc-gen-grpcasgi_python`` protoc plugin.

Generates ``x_grpc.py`` next to protoc's ``x_pb2.py``: for each service an
abstract ``<Service>Base`` (implement it and pass an instance to the server)
and a ``<Service>Stub`` (construct it with a client channel).  The module
shape is the same as grpclib's, so migrating means changing imports::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \\
        --grpcasgi_python_out=. helloworld/helloworld.proto

The plugin only needs ``protobuf``: it deliberately does not import the
grpcasgi runtime, so the names the generated code references are spelled out
below.
"""

from __future__ import annotations

import keyword
import sys
import textwrap
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from google.protobuf.compiler.plugin_pb2 import CodeGeneratorRequest, CodeGeneratorResponse
from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto

__all__ = ["main", "generate"]

PLUGIN_NAME = "grpcasgi.plugin.main"

# Runtime names referenced by generated modules.
CONST_MODULE = "grpcasgi.const"
CLIENT_MODULE = "grpcasgi.client"
SERVER_MODULE = "grpcasgi.server"
HANDLER = f"{CONST_MODULE}.Handler"
CARDINALITY = f"{CONST_MODULE}.Cardinality"
CHANNEL = f"{CLIENT_MODULE}.Channel"
SERVER_STREAM = f"{SERVER_MODULE}.Stream"

# (client_streaming, server_streaming) -> (Cardinality member, client method class)
_CARDINALITY: Dict[Tuple[bool, bool], Tuple[str, str]] = {
    (False, False): ("UNARY_UNARY", f"{CLIENT_MODULE}.UnaryUnaryMethod"),
    (False, True): ("UNARY_STREAM", f"{CLIENT_MODULE}.UnaryStreamMethod"),
    (True, False): ("STREAM_UNARY", f"{CLIENT_MODULE}.StreamUnaryMethod"),
    (True, True): ("STREAM_STREAM", f"{CLIENT_MODULE}.StreamStreamMethod"),
}

# FileDescriptorProto / ServiceDescriptorProto field numbers (for SourceCodeInfo paths).
_FILE_SERVICE_FIELD = 6
_SERVICE_METHOD_FIELD = 2


class GenerationError(Exception):
    """Reported to protoc as ``CodeGeneratorResponse.error``."""


# -- module and type names ---------------------------------------------------


def _strip_proto(proto_file_path: str) -> str:
    for suffix in (".protodevel", ".proto"):
        if proto_file_path.endswith(suffix):
            return proto_file_path[: -len(suffix)]
    return proto_file_path


def _base_module_name(proto_file_path: str) -> str:
    # Same rule as protoc's python_out (python/generator.cc: ModuleName()).
    return _strip_proto(proto_file_path).replace("-", "_").replace("/", ".")


def pb2_module_name(proto_file_path: str) -> str:
    """``helloworld/helloworld.proto`` -> ``helloworld.helloworld_pb2``."""
    return _base_module_name(proto_file_path) + "_pb2"


def grpc_module_name(proto_file_path: str) -> str:
    """``helloworld/helloworld.proto`` -> ``helloworld.helloworld_grpc``."""
    return _base_module_name(proto_file_path) + "_grpc"


def _is_plain_name(name: str) -> bool:
    """Usable as an identifier in ``a.b.c`` expressions and annotations."""
    return name.isidentifier() and not keyword.iskeyword(name)


@dataclass(frozen=True)
class TypeRef:
    """A message class: the pb2 module it lives in and its attribute path."""

    module: str
    path: Tuple[str, ...]


def _collect_types(
    proto_file: FileDescriptorProto,
    messages: Sequence[DescriptorProto],
    proto_prefix: str,
    py_path: Tuple[str, ...],
    out: Dict[str, TypeRef],
) -> None:
    module = pb2_module_name(proto_file.name)
    for message in messages:
        full_name = f"{proto_prefix}.{message.name}"
        path = py_path + (message.name,)
        out[full_name] = TypeRef(module, path)
        _collect_types(proto_file, message.nested_type, full_name, path, out)


def build_type_map(proto_files: Sequence[FileDescriptorProto]) -> Dict[str, TypeRef]:
    """Map fully-qualified proto names (``.pkg.Outer.Inner``) to Python classes."""
    types: Dict[str, TypeRef] = {}
    for proto_file in proto_files:
        prefix = f".{proto_file.package}" if proto_file.package else ""
        _collect_types(proto_file, proto_file.message_type, prefix, (), types)
    return types


class _Imports:
    """pb2 modules a generated module uses, and how to spell references to them."""

    def __init__(self) -> None:
        self.modules: Dict[str, Optional[str]] = {}  # module -> alias (None: plain import)

    def module_expr(self, module: str) -> str:
        if module not in self.modules:
            if all(_is_plain_name(part) for part in module.split(".")):
                self.modules[module] = None
            else:
                # e.g. "foo/import/bar.proto": `import foo.import.bar_pb2` is a
                # syntax error, so use importlib and an alias (protoc does too).
                self.modules[module] = module.replace("_", "__").replace(".", "_dot_")
        alias = self.modules[module]
        return module if alias is None else alias

    def expr(self, ref: TypeRef) -> str:
        """A runtime expression evaluating to the message class."""
        expr = self.module_expr(ref.module)
        for part in ref.path:
            expr = f"{expr}.{part}" if _is_plain_name(part) else f"getattr({expr}, {part!r})"
        return expr

    def annotation(self, ref: TypeRef) -> str:
        """The class as a type (``typing.Any`` when it has no dotted spelling)."""
        self.module_expr(ref.module)
        if self.modules[ref.module] is not None or not all(map(_is_plain_name, ref.path)):
            return "typing.Any"
        return ".".join((ref.module,) + ref.path)

    def lines(self) -> List[str]:
        plain = sorted(m for m, alias in self.modules.items() if alias is None)
        aliased = sorted((alias, m) for m, alias in self.modules.items() if alias is not None)
        out = [f"import {m}" for m in plain]
        if aliased:
            out.insert(0, "import importlib")
            out.extend(f"{alias} = importlib.import_module({m!r})" for alias, m in aliased)
        return out


# -- model ---------------------------------------------------------------------


@dataclass
class Method:
    name: str  # the proto name, used in the :path
    py_name: str  # the Python attribute name (differs for keywords)
    cardinality: str
    client_class: str
    request: TypeRef
    reply: TypeRef
    doc: str = ""


@dataclass
class Service:
    name: str
    full_name: str
    methods: List[Method] = field(default_factory=list)
    doc: str = ""


def _comments(proto_file: FileDescriptorProto) -> Dict[Tuple[int, ...], str]:
    return {
        tuple(location.path): location.leading_comments
        for location in proto_file.source_code_info.location
        if location.leading_comments
    }


def _python_method_names(names: Sequence[str]) -> List[str]:
    """Proto method names as Python identifiers: ``class`` -> ``class_``."""
    taken = set(names)
    result = []
    for name in names:
        py_name = name
        if keyword.iskeyword(name):
            while py_name in taken:
                py_name += "_"
            taken.add(py_name)
        result.append(py_name)
    return result


def build_services(proto_file: FileDescriptorProto, types: Mapping[str, TypeRef]) -> List[Service]:
    comments = _comments(proto_file)
    services = []
    for si, service_proto in enumerate(proto_file.service):
        full_name = (
            f"{proto_file.package}.{service_proto.name}" if proto_file.package else service_proto.name
        )
        service = Service(
            name=service_proto.name,
            full_name=full_name,
            doc=comments.get((_FILE_SERVICE_FIELD, si), ""),
        )
        py_names = _python_method_names([m.name for m in service_proto.method])
        for mi, (method_proto, py_name) in enumerate(zip(service_proto.method, py_names)):
            try:
                request = types[method_proto.input_type]
                reply = types[method_proto.output_type]
            except KeyError as exc:
                raise GenerationError(
                    f"{proto_file.name}: {full_name}.{method_proto.name}: unknown message type {exc}"
                ) from None
            cardinality, client_class = _CARDINALITY[
                (method_proto.client_streaming, method_proto.server_streaming)
            ]
            service.methods.append(
                Method(
                    name=method_proto.name,
                    py_name=py_name,
                    cardinality=cardinality,
                    client_class=client_class,
                    request=request,
                    reply=reply,
                    doc=comments.get((_FILE_SERVICE_FIELD, si, _SERVICE_METHOD_FIELD, mi), ""),
                )
            )
        services.append(service)
    return services


# -- rendering -------------------------------------------------------------------


class _Buffer:
    def __init__(self) -> None:
        self._lines: List[str] = []
        self._indent = 0

    def add(self, line: str = "") -> None:
        self._lines.append((" " * 4 * self._indent + line).rstrip())

    @contextmanager
    def indent(self) -> Iterator[None]:
        self._indent += 1
        try:
            yield
        finally:
            self._indent -= 1

    def content(self) -> str:
        return "\n".join(self._lines) + "\n"


def _escape_doc_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp"):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _docstring_lines(comment: str) -> List[str]:
    """A proto comment as the lines of a triple-quoted docstring ([] if empty)."""
    text = comment.replace("\r\n", "\n").replace("\r", "\n").expandtabs()
    lines = [line.rstrip() for line in textwrap.dedent(text).split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return []
    body = "\n".join(lines)
    body = "".join(_escape_doc_char(ch) for ch in body).replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    out = body.split("\n")
    if len(out) == 1:
        return [f'"""{out[0]}"""']
    out[0] = '"""' + out[0]
    out.append('"""')
    return out


def _add_docstring(buf: _Buffer, comment: str) -> bool:
    lines = _docstring_lines(comment)
    for line in lines:
        buf.add(line)
    return bool(lines)


def _render_base(buf: _Buffer, service: Service, imports: _Imports) -> None:
    buf.add(f"class {service.name}Base(abc.ABC):")
    with buf.indent():
        if _add_docstring(buf, service.doc):
            buf.add()
        for method in service.methods:
            stream_type = (
                f"{SERVER_STREAM}[{imports.annotation(method.request)}, {imports.annotation(method.reply)}]"
            )
            buf.add("@abc.abstractmethod")
            buf.add(f"async def {method.py_name}(self, stream: {stream_type!r}) -> None:")
            with buf.indent():
                if not _add_docstring(buf, method.doc):
                    buf.add("pass")
            buf.add()
        buf.add(f"def __mapping__(self) -> typing.Dict[str, {HANDLER}]:")
        with buf.indent():
            if not service.methods:
                buf.add("return {}")
                return
            buf.add("return {")
            with buf.indent():
                for method in service.methods:
                    buf.add(f"{f'/{service.full_name}/{method.name}'!r}: {HANDLER}(")
                    with buf.indent():
                        buf.add(f"self.{method.py_name},")
                        buf.add(f"{CARDINALITY}.{method.cardinality},")
                        buf.add(f"{imports.expr(method.request)},")
                        buf.add(f"{imports.expr(method.reply)},")
                    buf.add("),")
            buf.add("}")


def _render_stub(buf: _Buffer, service: Service, imports: _Imports) -> None:
    buf.add(f"class {service.name}Stub:")
    with buf.indent():
        if _add_docstring(buf, service.doc):
            buf.add()
        buf.add(f"def __init__(self, channel: {CHANNEL}) -> None:")
        with buf.indent():
            if not service.methods:
                buf.add("pass")
            for method in service.methods:
                annotation = (
                    f"{method.client_class}[{imports.annotation(method.request)}, "
                    f"{imports.annotation(method.reply)}]"
                )
                buf.add(f"self.{method.py_name}: {annotation} = {method.client_class}(")
                with buf.indent():
                    buf.add("channel,")
                    buf.add(f"{f'/{service.full_name}/{method.name}'!r},")
                    buf.add(f"{imports.expr(method.request)},")
                    buf.add(f"{imports.expr(method.reply)},")
                buf.add(")")


def render(proto_file_name: str, services: Sequence[Service]) -> str:
    """The source of the ``_grpc.py`` module for one ``.proto`` file."""
    header = _Buffer()
    header.add("# Generated by the Protocol Buffers compiler. DO NOT EDIT!")
    header.add(f"# source: {proto_file_name}")
    header.add(f"# plugin: {PLUGIN_NAME}")
    if not services:
        return header.content()

    imports = _Imports()
    body = _Buffer()
    for service in services:
        body.add()
        body.add()
        _render_base(body, service, imports)
        body.add()
        body.add()
        _render_stub(body, service, imports)

    header.add("import abc")
    header.add("import typing")
    header.add()
    header.add(f"import {CONST_MODULE}")
    header.add(f"import {CLIENT_MODULE}")
    header.add("if typing.TYPE_CHECKING:")
    with header.indent():
        header.add(f"import {SERVER_MODULE}")
    if imports.modules:
        header.add()
        for line in imports.lines():
            header.add(line)
    return header.content() + body.content()


def generate(request: CodeGeneratorRequest) -> CodeGeneratorResponse:
    """Handle one protoc request (pure: no I/O)."""
    response = CodeGeneratorResponse()
    response.supported_features = CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    try:
        types = build_type_map(request.proto_file)
        by_name = {f.name: f for f in request.proto_file}
        for file_name in request.file_to_generate:
            proto_file = by_name[file_name]
            services = build_services(proto_file, types)
            out = response.file.add()
            out.name = grpc_module_name(file_name).replace(".", "/") + ".py"
            out.content = render(proto_file.name, services)
    except GenerationError as exc:
        del response.file[:]
        response.error = str(exc)
    return response


def main() -> None:
    """Entry point: read a ``CodeGeneratorRequest`` from stdin, answer on stdout."""
    request = CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = generate(request)
    sys.stdout.buffer.write(response.SerializeToString())
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
