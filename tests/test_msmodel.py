"""The one MS model: :meth:`MsModel.check` catches each inconsistency; derived quantities; serialisation.

Reading real Measurement Sets is tested where they are made: ``tests/conversion/test_msmodel_read.py``
(the conversion's MS) and ``tests/calibration/test_foreign_array.py`` (one written by pyuvdata).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from msmodel_helpers import toy_model

from contimg.errors import InputFileError
from contimg.msmodel import AIPS_TO_CASA, CASA_TO_AIPS, MsModel, read_ms


def test_a_consistent_model_passes():
    ms = toy_model()
    ms.check()
    assert (ms.Nbls, ms.Nblts, ms.Nants_data) == (6, 24, 3)
    assert ms.has_rows and ms.label == "the planned MS"


def _refused(match: str, **changes) -> None:
    ms = toy_model(path="/data/x.ms", **changes)
    with pytest.raises(InputFileError, match=match) as err:
        ms.check()
    assert "/data/x.ms" in str(err.value)


@pytest.mark.parametrize("changes, match", [
    (dict(Nfreqs=9), r"freq_array has shape \(8,\), expected \(9,\)"),
    (dict(Npols=4), r"polarization_array has shape \(2,\), expected \(4,\)"),
    (dict(Ntimes=5, Nblts=30), r"time_array has shape \(4,\), expected \(5,\)"),
    (dict(lst_array=np.zeros(3)), r"lst_array has shape \(3,\)"),
    (dict(Nants_telescope=4), r"antenna_numbers has shape \(3,\), expected \(4,\)"),
    (dict(antenna_positions=np.zeros((3, 2))), r"antenna_positions has shape \(3, 2\)"),
    (dict(antenna_diameters=np.full(2, 4.65)), r"antenna_diameters has shape \(2,\)"),
    (dict(antenna_names=["A0", "A1"]), r"2 antenna_names for Nants_telescope = 3"),
    (dict(telescope_location=np.zeros(2)), r"telescope_location has shape"),
    (dict(Nblts=23), r"ant_1_array has shape \(24,\), expected \(23,\)"),
    (dict(uvw_array=None), r"per-row arrays .* given without uvw_array"),
    (dict(uvw_array=np.zeros((24, 2))), r"uvw_array has shape \(24, 2\)"),
    (dict(Nants_data=4), r"Nants_data = 4 exceeds Nants_telescope = 3"),
    (dict(Nbls=5), r"Nblts = 24 rows exceed Nbls x Ntimes = 5 x 4"),
])
def test_check_catches_counts_that_disagree_with_shapes(changes, match):
    _refused(match, **changes)


@pytest.mark.parametrize("changes, match", [
    (dict(freq_array=1.3e9 - 1e6 * np.arange(8)), "not ascending"),
    (dict(channel_width=0.0), "channel width 0.0 Hz is not positive"),
    (dict(channel_width=-1e6), "channel width -1000000.0 Hz is not positive"),
    (dict(integration_time=0.0), "integration time 0.0 s is not positive"),
    (dict(polarization_array=[-5, 13]), r"polarizations \[-5, 13\] are not distinct known codes"),
    (dict(polarization_array=[-5, -5]), r"polarizations \[-5, -5\] are not distinct"),
    (dict(time_array=2460800.5 - np.arange(4) / 86400), "integration times are not ascending"),
    (dict(antenna_numbers=np.array([0, 1, 1])), "antenna numbers are negative or repeated"),
    (dict(telescope_location=np.zeros(3)), "0 km from the Earth's centre"),
    (dict(phase_center_dec=2.0), "not on the sky"),
    (dict(phase_center_frame="GALACTIC"), "frame GALACTIC is not ICRS/J2000"),
    (dict(flagged_fraction=1.5), "flagged fraction 1.5"),
    (dict(Nants_data=2), "3 antennas appear in the rows, Nants_data = 2"),
    (dict(Nbls=7), "6 baselines appear in the rows, Nbls = 7"),
    (dict(antenna_numbers=np.array([0, 1, 5])), r"rows name antennas \[2\] that have no ANTENNA row"),
    (dict(time_index=np.full(24, 4)), r"time_index outside 0 ... 3"),
    (dict(antenna_diameters=np.array([4.65, 4.65, 25.0])), "dishes of 4.65 to 25 m"),
    (dict(antenna_diameters=np.zeros(3)), "gives no dish diameter"),
])
def test_check_catches_values_that_make_no_sense(changes, match):
    _refused(match, **changes)


def test_a_model_without_rows_is_checked_by_its_counts():
    ms = toy_model(ant_1_array=None, ant_2_array=None, uvw_array=None, time_index=None)
    ms.check()
    assert not ms.has_rows
    with pytest.raises(ValueError, match="no rows"):
        ms.cross_mask  # noqa: B018


def test_arrays_are_read_only_copies():
    freq = 1.3e9 + 1e6 * np.arange(8)
    ms = toy_model(freq_array=freq)
    freq[0] = 0.0
    assert ms.freq_array[0] == 1.3e9
    with pytest.raises(ValueError):
        ms.freq_array[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ms.Nfreqs = 3  # type: ignore[misc]


def test_derived_quantities():
    ms = toy_model(nants=3, ntimes=4)
    assert ms.start_mjd == pytest.approx(60800.0 - 5.0 / 86400, abs=1e-9)  # JD float64: ~20 us
    assert ms.end_mjd == pytest.approx(60800.0 + 35.0 / 86400, abs=1e-9)  # JD float64: ~20 us
    assert ms.mid_mjd == pytest.approx(60800.0 + 15.0 / 86400, abs=1e-9)  # JD float64: ~20 us
    assert (ms.freq_min, ms.freq_max, ms.freq_mean) == (1.300e9, 1.307e9, 1.3035e9)
    assert (ms.freq_lower_edge, ms.freq_upper_edge) == (1.2995e9, 1.3075e9)
    assert ms.max_baseline == 20.0
    assert ms.cross_mask.sum() == 3 * 4
    assert ms.baseline_index.max() == ms.Nbls - 1 and np.bincount(ms.baseline_index).tolist() == [4] * 6
    assert ms.time_index.tolist() == np.repeat(np.arange(4), 6).tolist()
    assert ms.dish_diameter == 4.65
    lat, lon, alt = ms.telescope_lla
    assert np.degrees(lat) == pytest.approx(37.23, abs=0.01) and np.degrees(lon) == pytest.approx(-118.28, abs=0.01)
    assert ms.location.lat.deg == pytest.approx(np.degrees(lat))


def test_antennas_with_data_and_of_the_telescope():
    """An ANTENNA table with rows for antennas without data (the conversion's ``unused-<n>``)."""
    base = toy_model(nants=4)
    keep = (base.ant_1_array != 2) & (base.ant_2_array != 2)
    ms = toy_model(nants=4, Nants_data=3, Nbls=6, Nblts=int(keep.sum()), ant_1_array=base.ant_1_array[keep],
                   ant_2_array=base.ant_2_array[keep], uvw_array=base.uvw_array[keep],
                   time_index=base.time_index[keep], antenna_names=["A0", "A1", "unused-2", "A3"])
    ms.check()
    assert ms.Nants_telescope == 4 and ms.Nants_data == 3
    assert ms.ant_array.tolist() == [0, 1, 3]
    assert ms.data_antenna_names == ("A0", "A1", "A3")
    assert ms.data_antenna_positions[:, 1].tolist() == [0.0, 10.0, 30.0]
    assert ms.antenna_index([3, 0]).tolist() == [3, 0]
    with pytest.raises(ValueError, match=r"antennas \[7\] are not in the ANTENNA table"):
        ms.antenna_index([7])


def test_unpolarized_response_is_one_in_the_parallel_hands():
    assert toy_model(pols=(-5, -7, -8, -6)).unpolarized_response.tolist() == [1, 0, 0, 1]  # XX XY YX YY
    assert toy_model(pols=(-1, -3, -4, -2)).unpolarized_response.tolist() == [1, 0, 0, 1]  # RR RL LR LL
    assert toy_model(pols=(1, 2, 3, 4)).unpolarized_response.tolist() == [1, 0, 0, 0]  # I Q U V
    assert all(CASA_TO_AIPS[AIPS_TO_CASA[p]] == p for p in AIPS_TO_CASA)
    assert AIPS_TO_CASA[-5] == 9 and AIPS_TO_CASA[-6] == 12 and AIPS_TO_CASA[-1] == 5 and AIPS_TO_CASA[-2] == 8


def test_json_round_trip():
    ms = toy_model(path="/data/x.ms", flagged_fraction=0.25)
    again = MsModel.from_dict(json.loads(json.dumps(ms.to_dict())))
    assert again.to_dict() == ms.to_dict()
    assert str(again.path) == "/data/x.ms" and again.pointing == ms.pointing and again.flagged_fraction == 0.25
    np.testing.assert_array_equal(again.uvw_array, ms.uvw_array)
    bad = ms.to_dict()
    bad["Nfreqs"] = 3
    with pytest.raises(InputFileError, match="freq_array has shape"):
        MsModel.from_dict(bad)


def test_read_ms_refuses_what_is_not_a_measurement_set(tmp_path):
    with pytest.raises(InputFileError, match="not a Measurement Set"):
        read_ms(tmp_path / "missing.ms")
    (tmp_path / "junk.ms").mkdir()
    (tmp_path / "junk.ms" / "table.dat").write_bytes(b"not a table")
    with pytest.raises(InputFileError, match="junk.ms: cannot read the Measurement Set"):
        read_ms(tmp_path / "junk.ms")
