"""The converted MS in the tools that consume it: casatools, WSClean, and the CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from conftest import expected_apparent_flux


@pytest.mark.integration
def test_casatools_opens_the_ms(calibrator_ms, tmp_path, monkeypatch):
    from contimg import casa_env

    monkeypatch.setenv("CONTIMG_CASA_LOG_DIR", str(tmp_path / "casa-logs"))
    ms_path, _, plan = calibrator_ms
    tools = casa_env.casatools()
    ms = tools.ms()
    ms.open(str(ms_path))
    try:
        assert ms.summary()  # listobs-like summary runs on it
        assert ms.nrow() == plan.ms.Nblts
        rng = ms.range(["uvdist"])
        assert rng["uvdist"][1] > 0
    finally:
        ms.close()
    msmd = tools.msmetadata()
    msmd.open(str(ms_path))
    try:
        assert msmd.nfields() == 1 and msmd.nspw() == 1
        assert msmd.nchan(0) == plan.ms.Nfreqs
        freqs = msmd.chanfreqs(0)
        assert np.all(np.diff(freqs) > 0) and np.allclose(freqs, plan.ms.freq_array)
        assert msmd.antennanames()[0] == "DSA-001"
        pc = msmd.phasecenter(0)
        assert pc["refer"] == "ICRS"
        assert math.isclose(pc["m0"]["value"] % (2 * math.pi), plan.ms.phase_center_ra, abs_tol=1e-9)
        assert math.isclose(pc["m1"]["value"], plan.ms.phase_center_dec, abs_tol=1e-9)
        assert msmd.observatorynames()[0] == "DSA_110"
    finally:
        msmd.close()


@pytest.mark.integration
def test_wsclean_images_an_offcenter_source_at_its_true_position(offcenter_group, offcenter_ms, tmp_path):
    """Sign conventions end to end: the source lands where the simulator put it, at its apparent flux."""
    if shutil.which("wsclean") is None:
        pytest.skip("wsclean not installed")
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    _, truth, (ra, dec) = offcenter_group
    name = tmp_path / "img"
    subprocess.run(
        ["wsclean", "-quiet", "-size", "256", "256", "-scale", "10asec", "-niter", "0", "-weight", "natural",
         "-no-update-model-required", "-j", "1", "-name", str(name), str(offcenter_ms)],
        check=True, capture_output=True, timeout=300,
    )
    with fits.open(f"{name}-image.fits") as hdul:
        image = hdul[0].data[0, 0]
        wcs = WCS(hdul[0].header).celestial
    j, i = np.unravel_index(np.argmax(image), image.shape)
    peak = wcs.pixel_to_world(i, j)
    true = SkyCoord(ra, dec, unit="deg", frame="icrs")
    assert peak.separation(true).arcsec < 15  # 1.5 pixels
    # a mirrored (conjugated) image would put it ~0.5 deg away
    center = wcs.pixel_to_world(128, 128)
    assert center.separation(true).deg > 0.2
    # the dirty-image peak is the apparent flux averaged over the band and the drift
    from contimg.conversion import plan_group

    files, _, _ = offcenter_group
    apparent = expected_apparent_flux(truth, 0, plan_group(files).ms.freq_array).mean()
    assert image.max() == pytest.approx(apparent, rel=0.15)


def test_cli_converts_a_directory(calibrator_group, tmp_path, capsys, clean_env):
    from contimg.cli import main

    files, _ = calibrator_group
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    clean_env.setenv("CONTIMG_STAGING_DIR", str(tmp_path / "staging"))
    out = tmp_path / "cli.ms"
    assert main(["convert", str(files[0].parent), "--out", str(out), "--processes", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ms_path"] == str(out) and result["validation"]["ok"]
    assert result["missing_subbands"] == []
    assert not any(p.is_file() for p in (tmp_path / "staging").rglob("*"))
    # errors are reported, not raised
    missing = tmp_path / "gone" / "2025-06-01T10:00:00_sb00.hdf5"
    assert main(["convert", str(missing), "--out", str(tmp_path / "x.ms")]) == 1
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "x.ms").exists()


def test_cli_rejects_a_bad_file_by_name(group_copy, tmp_path, capsys, clean_env):
    from contimg.cli import main

    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    clean_env.setenv("CONTIMG_STAGING_DIR", str(tmp_path / "staging"))
    victim = group_copy[3]
    victim.write_bytes(b"garbage")
    assert main(["convert", *map(str, group_copy), "--out", str(tmp_path / "x.ms")]) == 1
    err = capsys.readouterr().err
    assert victim.name in err and "cannot read as HDF5" in err
    assert not (tmp_path / "x.ms").exists()
