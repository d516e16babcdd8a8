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



def test_the_night_benchmark_passes_settings_to_its_cluster(monkeypatch):
    import importlib.util

    import pytest

    from contimg.config import Settings

    spec = importlib.util.spec_from_file_location("night_benchmark", ROOT / "benchmarks" / "night.py")
    night = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "night_benchmark", night)
    spec.loader.exec_module(night)
    env = night.settings_env(["imaging.subtract_dynamic_range=0", "qa.flux_scale_fail = 0.3"])
    assert env == {"CONTIMG_IMAGING__SUBTRACT_DYNAMIC_RANGE": "0", "CONTIMG_QA__FLUX_SCALE_FAIL": "0.3"}
    with pytest.raises(ValueError, match="SECTION.KEY=VALUE"):
        night.settings_env(["subtract_dynamic_range=0"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the names are those the settings read
    assert settings.imaging.subtract_dynamic_range == 0 and settings.qa.flux_scale_fail == 0.3
