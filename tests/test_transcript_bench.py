"""bench/transcript_bench.py runs end to end: its smoke run exits 0 and prints the ratio line.
No timing is asserted; the figures are the bench's to print, not the test's to judge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.store_free]  # the bench's own check

ROOT = Path(__file__).resolve().parent.parent


def test_the_quick_transcript_bench_runs_and_prints_the_ratio():
    proc = subprocess.run(
        [sys.executable, "bench/transcript_bench.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio with/without at p99:" in proc.stdout, proc.stdout
    assert "turns saved, read back from the store:" in proc.stdout, proc.stdout
