"""A real tool a test needs, installed from Debian's packages when it is missing.

The README's test command runs on a clean machine with only Python; tests
that drive a real peer (nginx, h2load) install its package with apt-get
when they run as root, and skip -- saying why -- where they cannot.
Imported by plain name (``tests/conftest.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

#: apt-get update + install can be slow on a cold package index.
INSTALL_TIMEOUT = 600


def _find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (path for path in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(path)), None
    )


def tool(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` first when it is missing (else skip)."""
    found = _find(binary)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{binary} is not installed and cannot be (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, timeout=INSTALL_TIMEOUT, check=True
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"{binary} could not be installed ({package}): {exc}")
    found = _find(binary)
    if not found:
        pytest.skip(f"{binary} could not be installed (no binary after apt-get install {package})")
    return found
