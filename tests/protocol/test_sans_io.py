"""The protocol layer is sans-IO: no asyncio, no dependency on upper layers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "grpcasgi" / "protocol"
MODULES = sorted(p.stem for p in PROTOCOL_DIR.glob("*.py") if p.stem != "__init__")

# Imports each module in a fresh interpreter. The parent ``grpcasgi`` package
# is stubbed so that whatever ``grpcasgi/__init__.py`` imports (the runtime
# layers may well need asyncio) does not hide what the protocol package needs.
PROBE = """
import json, sys, types
pkg = types.ModuleType("grpcasgi")
pkg.__path__ = [sys.argv[1]]
sys.modules["grpcasgi"] = pkg
before = set(sys.modules)
import importlib
importlib.import_module(sys.argv[2])
print(json.dumps({
    "asyncio": sorted(m for m in sys.modules if m == "asyncio" or m.startswith("asyncio.")),
    "grpcasgi": sorted(m for m in set(sys.modules) - before if m.startswith("grpcasgi.")),
}))
"""


def test_all_modules_found() -> None:
    assert {"status", "timeout", "metadata", "framing", "content_type", "compression", "headers"} <= set(MODULES)


@pytest.mark.parametrize("module", ["grpcasgi.protocol", *(f"grpcasgi.protocol.{m}" for m in MODULES)])
def test_import_does_not_load_asyncio(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(PROTOCOL_DIR.parent), module],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["asyncio"] == [], f"{module} imports asyncio"
    # The sans-IO layer stands alone: no imports from the rest of grpcasgi.
    outside = [m for m in loaded["grpcasgi"] if not m.startswith("grpcasgi.protocol")]
    assert outside == [], f"{module} imports {outside}"


@pytest.mark.parametrize("module", MODULES + ["__init__"])
def test_source_never_imports_asyncio(module: str) -> None:
    """Also catches imports inside functions, which an import probe misses."""
    tree = ast.parse((PROTOCOL_DIR / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        else:
            continue
        for name in names:
            assert name.split(".")[0] != "asyncio", f"{module}.py:{node.lineno} imports {name}"
