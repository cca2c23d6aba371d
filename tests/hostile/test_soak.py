"""A few seconds of scripts/soak.py: mixed load with cancellations and
deadlines leaves no task, no connection and no memory behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"

#: RSS growth allowed over the short CI run, after the warm-up second.
MAX_RSS_GROWTH_MB = 32


def test_short_soak_leaves_nothing_behind() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--duration",
            "4",
            "--concurrency",
            "32",
            "--json",
            "--max-rss-growth-mb",
            str(MAX_RSS_GROWTH_MB),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["problems"] == [], report
    assert result.returncode == 0, report
    assert report["errors"] == []
    assert report["tasks_after"] == report["tasks_before"]
    assert report["connections_after"] == 0
    assert report["rss_growth_mb"] < MAX_RSS_GROWTH_MB
    outcomes = report["outcomes"]
    assert set(outcomes) <= {"OK", "CANCELLED", "DEADLINE_EXCEEDED"}
    assert outcomes.get("OK", 0) > 100 and outcomes.get("CANCELLED", 0) > 0 and outcomes.get("DEADLINE_EXCEEDED", 0) > 0
