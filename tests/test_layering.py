"""The import rules of docs/architecture.md, checked on the source.

protocol/ knows nothing above it; middleware/ and contrib/ are built on the
call contract and the public client, never on a transport.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grpcasgi"


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import starts from
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = ".".join(package[: len(package) - node.level + 1])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (PACKAGE / folder).rglob("*.py") if "protos" not in p.parts)


@pytest.mark.parametrize("path", _sources("protocol"), ids=lambda p: p.name)
def test_protocol_imports_nothing_above_it(path: Path) -> None:
    bad = {
        name
        for name in _imports(path)
        if name.split(".")[0] == "asyncio"
        or (name.startswith("grpcasgi.") and not name.startswith("grpcasgi.protocol"))
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", _sources("middleware") + _sources("contrib"), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_middleware_and_contrib_never_reach_into_a_transport(path: Path) -> None:
    bad = {
        name
        for name in _imports(path)
        if name.startswith(("grpcasgi.transport", "grpcasgi.asgi", "grpcasgi._hypercorn"))
    }
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"
