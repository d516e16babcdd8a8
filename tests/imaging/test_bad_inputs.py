"""Bad input gives a clear error naming the MS and leaves no product behind."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.config import ImagingSettings
from contimg.errors import ConfigError, ExternalToolError, InputFileError
from contimg.imaging import image_ms

pytestmark = pytest.mark.integration


def _no_products(out) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_missing_corrected_data(ms_copy, tmp_path, imaging_settings):
    from casacore.tables import table

    with table(str(ms_copy), readonly=False, ack=False) as t:
        t.removecols(["CORRECTED_DATA"])
    out = tmp_path / "img"
    with pytest.raises(InputFileError, match="CORRECTED_DATA") as err:
        image_ms(ms_copy, settings=imaging_settings, out_dir=out)
    assert str(ms_copy) in str(err.value)
    assert _no_products(out)


def test_all_flagged(ms_copy, tmp_path, imaging_settings):
    from casacore.tables import table

    with table(str(ms_copy), readonly=False, ack=False) as t:
        t.putcol("FLAG", np.ones(t.getcol("FLAG").shape, bool))
    out = tmp_path / "img"
    with pytest.raises(InputFileError, match="flagged") as err:
        image_ms(ms_copy, settings=imaging_settings, out_dir=out)
    assert str(ms_copy) in str(err.value)
    assert _no_products(out)


def test_missing_ms(tmp_path, imaging_settings):
    with pytest.raises(InputFileError, match="not a Measurement Set"):
        image_ms(tmp_path / "nothing.ms", settings=imaging_settings, out_dir=tmp_path / "img")


def test_wsclean_failure_leaves_nothing(sim_group, tmp_path, imaging_settings, cell_arcsec):
    out = tmp_path / "img"
    with pytest.raises(ExternalToolError, match="wsclean failed") as err:
        image_ms(sim_group["ms"], settings=imaging_settings, out_dir=out, cell_arcsec=cell_arcsec,
                 extra_wsclean_args=["-no-such-option"])
    assert str(sim_group["ms"]) in str(err.value)
    assert not any(out.iterdir()), list(out.iterdir())


def test_wsclean_timeout(sim_group, tmp_path, cell_arcsec):
    out = tmp_path / "img"
    with pytest.raises(ExternalToolError, match="did not finish"):
        image_ms(sim_group["ms"], settings=ImagingSettings(timeout_s=0.05, threads=1), out_dir=out,
                 cell_arcsec=cell_arcsec)
    assert not any(out.iterdir())


def test_unknown_tier_and_backend(sim_group, tmp_path, imaging_settings):
    with pytest.raises(ConfigError, match="tier"):
        image_ms(sim_group["ms"], settings=imaging_settings, out_dir=tmp_path, tier="ultra")
    with pytest.raises(ConfigError, match="backend"):
        image_ms(sim_group["ms"], settings=imaging_settings, out_dir=tmp_path, backend="aips")
