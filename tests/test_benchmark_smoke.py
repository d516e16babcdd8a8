"""The benchmarks that import test helpers still run (the mosaic benchmark broke when its helper moved)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_mosaic_benchmark_runs_at_toy_size(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mosaic.py"), "--n", "2", "--nx", "256", "--ny",
                          "256", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["n_inputs"] == 2 and figures["n_tiles"] == 1
