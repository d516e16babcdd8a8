"""Primary-beam correction: the time/band-averaged Airy beam against the simulator's measurement equation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from contimg.beam import airy_power, angular_separation
from contimg.imaging.geometry import derive_geometry, pointing_track
from contimg.msmodel import read_ms
from contimg.imaging.mask import image_wcs
from contimg.imaging.pbcor import average_beam, beam_at_positions, pb_correct_fits


@pytest.fixture(scope="module")
def msm(sim_group):
    return read_ms(sim_group["ms"])


def test_averaged_beam_restores_intrinsic_flux(msm, sim_group):
    """sum_{t,nu} S(nu) A(t, nu) / N, divided by our beam, is S at the mean frequency to < 0.5 %.

    This is exactly what the simulator puts into the visibilities (sampled at
    every integration and channel centre) and what an MFS image measures.
    """
    cat = sim_group["truth"].catalog
    p_ra, p_dec = pointing_track(msm)
    freq = np.asarray(msm.freq_array)
    ra, dec = np.radians(cat.ra_deg), np.radians(cat.dec_deg)
    sep = angular_separation(p_ra[:, None], p_dec[:, None], ra[None, :], dec[None, :])  # (Ntimes, Nsrc)
    s_nu = cat.flux_jy[None, :] * (freq[:, None] / 1.4e9) ** cat.spectral_index[None, :]  # (Nfreqs, Nsrc)
    apparent = np.mean(airy_power(sep[:, None, :], freq[None, :, None]) * s_nu[None], axis=(0, 1))
    intrinsic = cat.flux_jy * (msm.freq_mean / 1.4e9) ** cat.spectral_index
    ours = apparent / beam_at_positions(ra, dec, msm)
    assert np.all(np.abs(ours / intrinsic - 1) < 0.005)
    # what the prototype did: the beam at the group's middle pointing, at 1.4 GHz
    mid = apparent / beam_at_positions(ra, dec, msm, time_average=False, freq_hz=1.4e9)
    assert np.max(np.abs(mid / intrinsic - 1)) > 0.02


def test_midpoint_beam_is_wrong_off_centre_in_ra(msm):
    """The drift makes the averaged beam differ from the mid-group beam by > 1 % at the half-power point."""
    ra0, dec0 = msm.phase_center_ra, msm.phase_center_dec
    ra = ra0 + np.radians(np.array([0.0, 1.4])) / math.cos(dec0)
    avg = beam_at_positions(ra, np.full(2, dec0), msm)
    mid = beam_at_positions(ra, np.full(2, dec0), msm, time_average=False)
    assert mid[0] > avg[0]  # on the phase center the source is seen off-axis most of the time
    assert abs(mid[1] / avg[1] - 1) > 0.01


def test_interpolated_beam_matches_exact(msm, rng):
    geom = derive_geometry(msm, pb_limit=0.2, cell_arcsec=60.0)
    wcs = image_wcs(msm, geom)
    beam = average_beam(wcs, (geom.ny, geom.nx), msm, step=16)
    x = rng.integers(0, geom.nx, 50)
    y = rng.integers(0, geom.ny, 50)
    ra, dec = wcs.pixel_to_world_values(x.astype(float), y.astype(float))
    exact = beam_at_positions(np.radians(ra), np.radians(dec), msm)
    assert np.max(np.abs(beam[y, x] - exact)) < 1e-4


def test_pb_correct_fits(msm, tmp_path):
    geom = derive_geometry(msm, pb_limit=0.2, cell_arcsec=60.0)
    header = image_wcs(msm, geom).to_header()
    header["BMAJ"], header["BMIN"], header["BPA"], header["BUNIT"] = 0.01, 0.005, 0.0, "JY/BEAM"
    flat = np.ones((geom.ny, geom.nx), np.float32)
    src = tmp_path / "flat.fits"
    fits.PrimaryHDU(flat, header).writeto(src)
    beam = pb_correct_fits(src, ms=msm, pbcor_fits=tmp_path / "pbcor.fits", pb_fits=tmp_path / "pb.fits",
                           pb_limit=0.3)
    corrected = fits.getdata(tmp_path / "pbcor.fits")
    inside = beam >= 0.3
    assert np.allclose(corrected[inside], 1.0 / beam[inside], rtol=1e-5)
    assert np.isnan(corrected[~inside]).all() and (~inside).any()
    assert np.allclose(fits.getdata(tmp_path / "pb.fits"), beam)
    assert "BMAJ" not in fits.getheader(tmp_path / "pb.fits")
    assert not list(tmp_path.glob(".*"))
