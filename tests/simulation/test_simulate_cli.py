"""``contimg simulate``: the small case of the issue, options, and errors."""

from __future__ import annotations

import json

import pytest

from contimg.cli import main
from contimg.naming import parse_subband_filename


def test_small_case(tmp_path, capsys, clean_env):
    out = tmp_path / "sim"
    rc = main(["simulate", str(out), "--antennas", "8", "--channels-per-subband", "4", "--groups", "1", "--seed", "1"])
    assert rc == 0
    files = sorted(out.glob("*.hdf5"))
    assert len(files) == 16
    assert sorted(parse_subband_filename(f).subband for f in files) == list(range(16))
    assert (out / "truth.json").exists() and (out / "truth.npz").exists() and (out / "sources.csv").exists()
    assert "truth:" in capsys.readouterr().out
    assert not list(out.glob(".*partial"))


def test_options_reach_the_truth(tmp_path, clean_env):
    out = tmp_path / "sim"
    rc = main([
        "simulate", str(out), "--antennas", "4", "--channels-per-subband", "1", "--days", "2", "--groups", "2",
        "--dec", "52.5", "--seed", "3", "--calibrator-flux", "8", "--no-noise", "--no-gains", "--jitter-s", "0",
        "--n-sources", "5", "--ese-fraction", "0.4", "--ese", "1:0.5:1:0.3", "--flux-scale-error", "0.05",
        "--start", "2025-03-04T05:06:07",
    ])
    assert rc == 0
    meta = json.loads((out / "truth.json").read_text())
    cfg = meta["config"]
    assert cfg["n_days"] == 2 and cfg["n_groups"] == 2 and cfg["dec_deg"] == 52.5 and cfg["noise"] is False
    assert cfg["gains"] is False and cfg["calibrator_flux_jy"] == 8 and cfg["flux_scale_error"] == 0.05
    assert cfg["start"].startswith("2025-03-04T05:06:07")
    assert any(ev["source_id"] == 1 and ev["depth"] == 0.3 for ev in meta["events"])
    assert len(meta["groups"]) == 4 and len(list(out.glob("*.hdf5"))) == 64
    assert meta["groups"][0]["files"]["0"] == "2025-03-04T05:06:07_sb00.hdf5"


def test_bad_option_is_a_clean_error(tmp_path, capsys, clean_env):
    rc = main(["simulate", str(tmp_path / "x"), "--channels-per-subband", "0"])
    assert rc == 1
    assert "channels_per_subband" in capsys.readouterr().err


def test_bad_ese_spec_is_rejected(tmp_path, clean_env):
    with pytest.raises(SystemExit):
        main(["simulate", str(tmp_path / "x"), "--ese", "1:2:3"])


def test_subbands_and_catalog_options(tmp_path, clean_env):
    cat = tmp_path / "sky.csv"
    cat.write_text("id,ra_deg,dec_deg,flux_jy,spectral_index,calibrator\n7,283.1,35.1,2.5,-0.7,1\n")
    out = tmp_path / "sim"
    rc = main(["simulate", str(out), "--antennas", "3", "--channels-per-subband", "1", "--subbands", "0-2,14",
               "--catalog", str(cat), "--seed", "2"])
    assert rc == 0
    assert sorted(parse_subband_filename(f).subband for f in out.glob("*.hdf5")) == [0, 1, 2, 14]
    meta = json.loads((out / "truth.json").read_text())
    assert meta["calibrator_id"] == 7
    assert (out / "sources.csv").read_text().splitlines()[1].startswith("7,283.1")


def test_missing_catalog_is_a_clean_error(tmp_path, capsys, clean_env):
    rc = main(["simulate", str(tmp_path / "x"), "--antennas", "3", "--catalog", str(tmp_path / "none.csv")])
    assert rc == 1
    assert "none.csv" in capsys.readouterr().err
