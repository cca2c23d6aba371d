"""The examples run as documented, and the docs stay true to the code.

Most example folders have their own end-to-end test next to the feature they
show (``tests/contrib`` runs health and reflection, ``tests/asgi`` the
Starlette mount, ...); this module runs the ones that had none, checks that
every example folder is run by some test, and guards the documentation
against drifting from the code it describes: links and repository paths
resolve, every built-in middleware is documented in ``docs/middleware.md``
with its real signature, and the hand-written service of ``docs/codegen.md``
runs as printed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from grpcasgi import Status

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"

#: Bound for one example process; they take a second or two when healthy.
TIMEOUT = 120


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- examples --------------------------------------------------------------------


def test_helloworld_run_py() -> None:
    """``python examples/helloworld/run.py`` (what ``scripts/example.sh`` runs):
    server.py and client.py in subprocesses, the client's replies printed."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "helloworld" / "run.py")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Serving on 127.0.0.1:"), lines
    assert lines[1:] == ["Hello, World!", "Hello, World!", "Bonjour, World!", "Hola, World!"]
    assert "Traceback" not in result.stderr, result.stderr


def test_metrics_prometheus_serve_mode_exits_cleanly_on_sigterm() -> None:
    """``main.py --serve`` (the README's second command) serves until SIGTERM, then exits 0."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "metrics_prometheus" / "main.py"), "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert re.match(r"gRPC on 127\.0\.0\.1:\d+, metrics on http://127\.0\.0\.1:\d+/metrics$", first.strip()), first
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, first + rest
    assert "Traceback" not in rest, rest


def test_every_example_folder_is_run_by_a_test() -> None:
    """A new example without a test would silently rot: each folder must be
    named by a test module that also mentions an example."""
    sources = [p.read_text() for p in (ROOT / "tests").rglob("*.py")]
    sources = [s for s in sources if "example" in s]
    missing = []
    for folder in sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        pattern = re.compile(rf"[\"'/]{re.escape(folder.name)}[\"'/]")
        if not any(pattern.search(s) for s in sources):
            missing.append(folder.name)
    assert not missing, f"examples without a test that runs them: {missing}"


# -- docs: links and paths ---------------------------------------------------------


def _markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(EXAMPLES.glob("*/README.md"))]


def _without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", _without_code(page.read_text()), re.M)}


def test_docs_links_and_paths_resolve() -> None:
    """Markdown links (with their #anchors) and backticked repository paths in
    README.md, docs/ and the examples' READMEs point at things that exist."""
    broken = []
    for page in _markdown_pages():
        text = _without_code(page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, fragment = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: link {target}: no such file")
            elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: link {target}: no such heading")
        for ref in re.findall(r"`((?:docs|examples|grpcasgi|tests|scripts|benchmarks|fuzz)/[\w./-]*)`", text):
            if "..." not in ref and not (ROOT / ref).exists():
                broken.append(f"{page.relative_to(ROOT)}: path {ref} does not exist")
    assert not broken, "\n".join(broken)


def test_docs_index_lists_every_page() -> None:
    """docs/index.md is the map of the docs: it links every other page."""
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)(?:#[^)]*)?\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert not pages - linked, f"pages missing from docs/index.md: {sorted(pages - linked)}"


# -- docs/middleware.md: every built-in with its real signature -------------------------

MIDDLEWARE_MODULES = [
    "grpcasgi.middleware.auth",
    "grpcasgi.middleware.deadlines",
    "grpcasgi.middleware.logging",
    "grpcasgi.middleware.recovery",
    "grpcasgi.middleware.limits",
    "grpcasgi.middleware.validation",
    "grpcasgi.middleware.selector",
    "grpcasgi.middleware.tracing",
    "grpcasgi.middleware.metrics",
    "grpcasgi.middleware.retry",
    "grpcasgi.middleware.credentials",
]


def _documented_signatures() -> dict[str, ast.arguments]:
    """``Name(app, *, option=default, ...)`` lines of the "Built-in middleware"
    code blocks, parsed as parameter lists."""
    text = (DOCS / "middleware.md").read_text()
    section = text.split("## Built-in middleware", 1)[1]
    found: dict[str, ast.arguments] = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        for match in re.finditer(r"^(\w+)\((.*?)\)[ \t]*(?:#[^\n]*)?$(?=\n\w|\n?\Z)", block, re.S | re.M):
            name, params = match.group(1), " ".join(match.group(2).split())
            try:
                tree = ast.parse(f"def {name}({params}): pass")
            except SyntaxError:
                continue  # a usage line such as select(Middleware(...), ...)
            function = tree.body[0]
            assert isinstance(function, ast.FunctionDef)
            found[name] = function.args
    return found


def _builtin_middleware() -> dict[str, Any]:
    classes: dict[str, Any] = {}
    for module_name in MIDDLEWARE_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj) and name.endswith("Middleware"):
                classes[name] = obj
    return classes


def test_middleware_doc_covers_every_builtin() -> None:
    documented = _documented_signatures()
    missing = sorted(set(_builtin_middleware()) - set(documented))
    assert not missing, f"built-in middleware without a signature in docs/middleware.md: {missing}"


@pytest.mark.parametrize("name", sorted(_builtin_middleware()) + ["RetryThrottle"])
def test_middleware_doc_signature_matches_code(name: str) -> None:
    """Parameter names, kinds and defaults in docs/middleware.md are the code's."""
    documented = _documented_signatures()[name]
    cls = _builtin_middleware().get(name) or importlib.import_module("grpcasgi.middleware.retry").RetryThrottle
    real = [p for p in inspect.signature(cls).parameters.values()]
    doc_positional = [a.arg for a in documented.args]
    doc_keyword = [a.arg for a in documented.kwonlyargs]
    assert doc_positional == [p.name for p in real if p.kind is p.POSITIONAL_OR_KEYWORD], name
    assert doc_keyword == [p.name for p in real if p.kind is p.KEYWORD_ONLY], name
    # Defaults, evaluated in the names the docs use.
    namespace: dict[str, Any] = {"Status": Status, "logging": logging, "time": time, "random": random}
    namespace.update(vars(importlib.import_module(cls.__module__)))
    doc_defaults = dict(zip(doc_positional[len(doc_positional) - len(documented.defaults) :], documented.defaults))
    doc_defaults.update({a.arg: d for a, d in zip(documented.kwonlyargs, documented.kw_defaults) if d is not None})
    for parameter in real:
        if parameter.default is parameter.empty:
            assert parameter.name not in doc_defaults, f"{name}({parameter.name}) is required, the docs give a default"
            continue
        assert parameter.name in doc_defaults, f"{name}({parameter.name}=...) has a default the docs omit"
        value = eval(compile(ast.Expression(doc_defaults[parameter.name]), "<docs>", "eval"), namespace)  # noqa: S307
        assert value == parameter.default, f"{name}({parameter.name}=): docs say {value!r}, code {parameter.default!r}"


# -- docs/codegen.md: a service without codegen -------------------------------------------


def test_codegen_doc_handwritten_service_runs(tmp_path: Path) -> None:
    """The two snippets of "Services without codegen" run as printed (server on
    127.0.0.1, port 0 instead of 50051)."""
    text = (DOCS / "codegen.md").read_text().split("## Services without codegen", 1)[1]
    server_code, client_code = re.findall(r"```python\n(.*?)```", text, re.S)[:2]
    assert "server = Server([Greeter()])" in server_code
    script = tmp_path / "snippet.py"
    script.write_text(
        "import asyncio\n"
        + server_code
        + "\nasync def main():\n"
        + "    await server.start('127.0.0.1', 0)\n"
        + "    try:\n"
        + textwrap.indent(client_code.replace("50051", "server.port"), "        ")
        + "        print(reply.message)\n"
        + "    finally:\n"
        + "        server.close()\n"
        + "        await server.wait_closed()\n"
        + "\nasyncio.run(main())\n"
    )
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join((str(EXAMPLES / "helloworld"), env["PYTHONPATH"]))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Hello, World!"]


def test_codegen_doc_shows_the_real_generated_code() -> None:
    """The generated-module excerpt in docs/codegen.md is what the plugin produced
    for the helloworld example (regenerated and checked by tests/test_codegen.py)."""
    text = (DOCS / "codegen.md").read_text()
    excerpt = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("class GreeterBase"))
    generated = (EXAMPLES / "helloworld" / "helloworld" / "helloworld_grpc.py").read_text()
    assert excerpt in generated


# -- docs/spec.md: the scope and event tables are types.py's ------------------------------


def _spec_section(title: str) -> str:
    text = (DOCS / "spec.md").read_text()
    start = text.index(title)
    following = re.search(r"^#{2,3} ", text[start + len(title) :], re.M)
    return text[start : start + len(title) + (following.start() if following else len(text))]


def _first_column_names(section: str, table: int = 0) -> set[str]:
    """Backticked names in the first column of table number ``table`` of ``section``."""
    tables = re.findall(r"((?:^\|.*\n)+)", section, re.M)
    names: set[str] = set()
    for line in tables[table].splitlines()[2:]:  # after the header row and its |---| line
        names.update(re.findall(r"`([\w.]+)`", line.split("|")[1]))
    return names


def _event_types(annotation: Any) -> set[str]:
    from typing import get_args, get_type_hints

    return {get_args(get_type_hints(cls)["type"])[0] for cls in get_args(annotation)}


def test_spec_scope_tables_list_exactly_the_typed_keys() -> None:
    from grpcasgi.types import ClientScope, Scope

    assert _first_column_names(_spec_section("## 3. The scope")) == set(Scope.__annotations__)
    assert _first_column_names(_spec_section("### C.1 The client scope")) == set(ClientScope.__annotations__)


def test_spec_event_tables_list_exactly_the_typed_events() -> None:
    from grpcasgi.types import ReceiveEvent, SendEvent

    assert _first_column_names(_spec_section("### 4.1 `receive()`")) == _event_types(ReceiveEvent)
    assert _first_column_names(_spec_section("### 4.2 `send(event)`")) == _event_types(SendEvent)
    client = _spec_section("### C.2 Client events")
    assert _first_column_names(client, 0) == {"grpc.request.message", "grpc.request.end"}
    assert _first_column_names(client, 1) == _event_types(SendEvent)
