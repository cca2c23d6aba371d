"""The request-path fuzz target (fuzz/fuzz_request_path.py), briefly.

With atheris installed, libFuzzer drives it for a few seconds from the seed
corpus (coverage-guided); the same target also runs over random mutations
of the seeds, which needs nothing beyond the project itself. Either way a
finding (an exception, a call task left running) fails the test with the
reproducer's output. Longer runs: ``python fuzz/fuzz_request_path.py
-max_total_time=600``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_request_path.py"


def test_random_corpus_run() -> None:
    result = subprocess.run(
        [sys.executable, str(TARGET), "--random", "3"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no finding" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            "-max_total_time=4",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "Done" in result.stderr
    assert sorted(p.name for p in corpus.iterdir() if p.name.startswith("seed-"))
