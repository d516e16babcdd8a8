"""A mosaic of three consecutive simulated groups against truth.

Three consecutive groups of the test array (20 core antennas, 2 channels per subband, thermal noise
on, gains off: CORRECTED_DATA == DATA is calibrated by construction), imaged with WSClean at the
standard tier, each ~309 s and 1.3 deg of drift apart. One 0.5 Jy source sits at the middle group's
centre, so every group sees it (at ~1.3 deg from the outer groups' centres, beam response ~0.6).
In the mosaic it must come back within 2 % of its flux at the image reference frequency, and the
mosaic's noise in source-free regions must follow the noise map within 10 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

CORE_ANTENNAS = tuple(int(a) for a in np.round(np.linspace(0, 101, 20)))  # as tests/imaging/conftest.py
CELL_ARCSEC = 15.0  # as tests/imaging/conftest.py: the core array's beam is ~45 x 90 arcsec

pytestmark = pytest.mark.integration

N_GROUPS = 3
FLUX_JY, ALPHA = 0.5, -0.7


@pytest.fixture(scope="module")
def drift_images(tmp_path_factory, imaging_settings):
    """The three groups imaged: (list of ImageProducts, (ra, dec) of the source)."""
    from astropy.time import Time

    from contimg.conversion import convert_group
    from contimg.imaging import image_ms
    from contimg.simulation import SimulationConfig, simulate
    from contimg.simulation.config import DEFAULT_START, INTEGRATION_TIME_S, NINTEGRATIONS
    from contimg.simulation.sky import SkyCatalog
    from contimg.stations import apparent_to_icrs, lst_rad

    # the middle group's phase centre (the meridian at apparent Dec 35 at its mid-time), in ICRS
    t_mid = Time(DEFAULT_START).jd + (1.5 * NINTEGRATIONS) * INTEGRATION_TIME_S / 86400
    ra0, dec0 = apparent_to_icrs(lst_rad(np.array([t_mid])), np.radians([35.0]), np.array([t_mid]))
    ra, dec = float(np.degrees(ra0[0])), float(np.degrees(dec0[0])) + 0.1
    sky = SkyCatalog.from_sources(np.array([ra]), np.array([dec]), np.array([FLUX_JY]),
                                  spectral_index=np.array([ALPHA]))
    out = tmp_path_factory.mktemp("mosaic_truth")
    cfg = SimulationConfig(antenna_numbers=CORE_ANTENNAS, channels_per_subband=2, seed=11, noise=True, gains=False,
                           jitter_s=0, n_groups=N_GROUPS)
    result = simulate(out / "raw", cfg, catalog=sky)
    made = []
    for k, group in enumerate(result.groups):
        ms = out / f"g{k}.ms"
        convert_group(group.paths, ms, staging_dir=out / "staging", processes=1)
        made.append(image_ms(ms, settings=imaging_settings, out_dir=out / "img", name=f"g{k}",
                             cell_arcsec=CELL_ARCSEC))
    return made, (ra, dec)


def test_a_source_seen_by_every_group_comes_back_in_the_mosaic(drift_images, tmp_path):
    from astropy.wcs import WCS

    from contimg.imaging.mosaic import MosaicInput, make_mosaic
    from contimg.imaging.qa import fit_point_source, robust_rms
    from contimg.photometry.forced import forced_photometry

    made, (ra, dec) = drift_images
    inputs = [MosaicInput(Path(p.image), Path(p.pb), p.qa.rms_jy, label=f"g{k}") for k, p in enumerate(made)]
    result = make_mosaic(inputs, tmp_path, name="night", pb_limit=0.2)
    assert len(result.tiles) == 1 and len(result.tiles[0]["inputs"]) == N_GROUPS
    tile = result.tiles[0]
    data, header = fits.getdata(tile["files"]["image"]), fits.getheader(tile["files"]["image"])
    noise = fits.getdata(tile["files"]["noise"])[0, 0]
    true = FLUX_JY * (header["CRVAL3"] / 1.4e9) ** ALPHA

    fit = fit_point_source(data, header, ra, dec)
    phot = forced_photometry(data, header, np.array([ra]), np.array([dec]))
    singles = [fit_point_source(fits.getdata(p.pbcor), fits.getheader(p.pbcor), ra, dec).flux_jy / true
               for p in made]
    forced_singles = [forced_photometry(fits.getdata(p.pbcor), fits.getheader(p.pbcor), np.array([ra]),
                                        np.array([dec])).flux_jy[0] / true for p in made]
    print(f"mosaic/true {fit.flux_jy / true:.4f} (forced {phot.flux_jy[0] / true:.4f}), "
          f"single groups {np.round(singles, 4)} (forced {np.round(forced_singles, 4)}); rms {[round(p.qa.rms_jy * 1e3, 3) for p in made]} mJy")
    assert fit.ok and fit.flux_jy == pytest.approx(true, rel=0.02)
    assert phot.flux_jy[0] == pytest.approx(true, rel=0.02)

    # noise: away from the source (> 0.5 deg), the mosaic over its noise map is a unit normal
    x, y = WCS(header).celestial.world_to_pixel_values(ra, dec)
    img = data[0, 0]
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    cell = abs(header["CDELT2"])
    far = np.hypot(xx - x, yy - y) * cell > 0.5
    good = far & np.isfinite(img) & (noise < 2.0 * np.nanmin(noise))
    z = robust_rms(img[good] / noise[good])
    best = good & (noise < 1.2 * np.nanmin(noise))
    ratio = robust_rms(img[best]) / float(np.median(noise[best]))
    print(f"noise: rms(S/sigma) {z:.3f} over {good.sum()} px; rms/predicted {ratio:.3f} where the noise map is "
          f"lowest ({1e3 * np.nanmin(noise):.3f} mJy/beam vs single images {1e3 * min(p.qa.rms_jy for p in made):.3f})")
    assert z == pytest.approx(1.0, abs=0.1)
    assert ratio == pytest.approx(1.0, abs=0.1)
