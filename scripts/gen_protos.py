#!/usr/bin/env python
"""Regenerate the protobuf and grpcasgi modules committed in this repository.

    python scripts/gen_protos.py            # rewrite the generated files in place
    python scripts/gen_protos.py --check    # exit 1 if a committed file is stale

Runs ``python -m grpc_tools.protoc -I. --python_out=. --pyi_out=.
--grpcasgi_python_out=.`` (grpcio-tools is only needed here, not at run time)
with this checkout's own plugin, from the repository root for the packaged
protos and from ``examples/helloworld`` for the example.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import filecmp
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Job:
    cwd: str  # relative to ROOT; protoc runs here with -I.
    protos: Tuple[str, ...]  # relative to cwd


JOBS: Tuple[Job, ...] = (
    Job(
        ".",
        (
            "grpcasgi/interop/protos/grpc/testing/empty.proto",
            "grpcasgi/interop/protos/grpc/testing/messages.proto",
            "grpcasgi/interop/protos/grpc/testing/test.proto",
            "grpcasgi/contrib/protos/grpc/health/v1/health.proto",
            "grpcasgi/contrib/protos/grpc/reflection/v1/reflection.proto",
            "grpcasgi/contrib/protos/grpc/reflection/v1alpha/reflection.proto",
        ),
    ),
    Job("examples/helloworld", ("helloworld/helloworld.proto",)),
)

_VERSION_RE = re.compile(r"^# Protobuf Python Version: (.*)$", re.M)


@contextlib.contextmanager
def plugin_wrapper(python: str = sys.executable, root: Path = ROOT) -> Iterator[Path]:
    """An executable ``protoc-gen-grpcasgi_python`` running ``root``'s plugin.

    Pass it as ``--plugin=protoc-gen-grpcasgi_python=<path>``; it works from a
    checkout without the package being installed.
    """
    with tempfile.TemporaryDirectory(prefix="grpcasgi-plugin-") as tmp:
        if os.name == "nt":
            path = Path(tmp, "protoc-gen-grpcasgi_python.cmd")
            path.write_text(
                f'@set "PYTHONPATH={root};%PYTHONPATH%"\r\n@"{python}" -m grpcasgi.plugin %*\r\n'
            )
        else:
            path = Path(tmp, "protoc-gen-grpcasgi_python")
            path.write_text(
                "#!/bin/sh\n"
                f'PYTHONPATH={shlex.quote(str(root))}"${{PYTHONPATH:+:$PYTHONPATH}}" '
                f"exec {shlex.quote(python)} -m grpcasgi.plugin \"$@\"\n"
            )
            path.chmod(0o755)
        yield path


def protoc(
    protos: Sequence[str],
    *,
    cwd: Path,
    out: Path,
    plugin: Path,
    python: str = sys.executable,
    pyi: bool = True,
) -> None:
    """Run grpc_tools.protoc with python, pyi and grpcasgi output into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    args = [
        python,
        "-m",
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-grpcasgi_python={plugin}",
        "-I.",
        f"--python_out={out}",
        f"--grpcasgi_python_out={out}",
    ]
    if pyi:
        args.append(f"--pyi_out={out}")
    args.extend(protos)
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"protoc failed ({proc.returncode}) in {cwd}:\n{shlex.join(args)}\n{proc.stdout}{proc.stderr}"
        )


def generate(out_dir: Optional[Path] = None) -> List[Path]:
    """Generate every job; into the tree itself, or mirrored under ``out_dir``.

    Returns the generated files, relative to the output root.
    """
    target = ROOT if out_dir is None else Path(out_dir)
    produced: List[Path] = []
    with plugin_wrapper() as plugin:
        for job in JOBS:
            out = target / job.cwd
            if out_dir is None:
                protoc(job.protos, cwd=ROOT / job.cwd, out=out, plugin=plugin)
                produced.extend(_outputs(job))
            else:
                # Generate into an empty directory so the produced files are exactly the outputs.
                with tempfile.TemporaryDirectory(prefix="grpcasgi-gen-") as tmp:
                    protoc(job.protos, cwd=ROOT / job.cwd, out=Path(tmp), plugin=plugin)
                    for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
                        rel = path.relative_to(tmp)
                        dest = out / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(path.read_bytes())
                        produced.append(Path(job.cwd, rel))
    return [Path(os.path.normpath(p)) for p in produced]


def _outputs(job: Job) -> List[Path]:
    out = []
    for proto in job.protos:
        stem = proto[: -len(".proto")].replace("-", "_")
        for suffix in ("_pb2.py", "_pb2.pyi", "_grpc.py"):
            out.append(Path(job.cwd, stem + suffix))
    return out


def protobuf_gencode_version(text: str) -> Optional[str]:
    """The ``# Protobuf Python Version:`` header of a ``_pb2.py`` file."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def check() -> List[Tuple[Path, str]]:
    """Regenerate into a temp dir; ``(path, what is wrong)`` for each stale committed file."""
    problems: List[Tuple[Path, str]] = []
    with tempfile.TemporaryDirectory(prefix="grpcasgi-check-") as tmp:
        for rel in generate(Path(tmp)):
            fresh, committed = Path(tmp, rel), ROOT / rel
            if not committed.exists():
                problems.append((rel, "missing (run scripts/gen_protos.py)"))
            elif not filecmp.cmp(fresh, committed, shallow=False):
                old, new = committed.read_text(), fresh.read_text()
                old_version, new_version = protobuf_gencode_version(old), protobuf_gencode_version(new)
                if old_version != new_version:
                    why = f"generated by protoc for protobuf {old_version}, this grpcio-tools makes {new_version}"
                else:
                    diff = difflib.unified_diff(
                        old.splitlines(), new.splitlines(), "committed", "regenerated", lineterm="", n=1
                    )
                    why = "differs from a fresh generation:\n" + "\n".join(list(diff)[:40])
                problems.append((rel, why))
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that committed files are up to date")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for rel, why in problems:
            print(f"{rel}: {why}")
        print("generated files are up to date" if not problems else f"{len(problems)} stale file(s)")
        return 1 if problems else 0
    for path in generate():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
