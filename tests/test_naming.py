"""DSA-110 subband file names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from contimg.errors import InputFileError
from contimg.naming import NSUBBANDS, format_subband_filename, is_subband_filename, parse_subband_filename


@pytest.mark.parametrize(
    ("name", "ts", "sb"),
    [
        ("2025-10-02T10:02:45_sb03.hdf5", datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc), 3),
        ("2024-02-29T23:59:59_sb00.hdf5", datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc), 0),
        ("/data/incoming/2025-01-01T00:00:00_sb15.hdf5", datetime(2025, 1, 1, tzinfo=timezone.utc), 15),
    ],
)
def test_parse_good_names(name, ts, sb):
    parsed = parse_subband_filename(name)
    assert parsed.timestamp == ts and parsed.subband == sb
    assert parsed.timestamp.tzinfo is not None
    assert parsed.name == Path(name).name
    assert is_subband_filename(name)


@pytest.mark.parametrize(
    "name",
    [
        "2025-10-02T10:02:45_sb3.hdf5",
        "2025-10-02 10:02:45_sb03.hdf5",
        "2025-10-02T10:02:45_sb03.h5",
        "2025-10-02T10:02:45_sb03.hdf5.partial",
        ".2025-10-02T10:02:45_sb03.hdf5.partial",
        "2025-10-02T10:02_sb03.hdf5",
        "x2025-10-02T10:02:45_sb03.hdf5",
        "2025-10-02T10:02:45_SB03.hdf5",
        "",
    ],
)
def test_bad_names(name):
    assert not is_subband_filename(name)
    with pytest.raises(InputFileError, match="not a DSA-110 subband file name"):
        parse_subband_filename(name)


@pytest.mark.parametrize("name", ["2025-10-02T10:02:45_sb16.hdf5", "2025-10-02T10:02:45_sb99.hdf5"])
def test_out_of_range_subband(name):
    assert is_subband_filename(name)  # the pattern matches; the range check is parse's
    with pytest.raises(InputFileError, match="out of range"):
        parse_subband_filename(name)


@pytest.mark.parametrize("name", ["2025-13-02T10:02:45_sb01.hdf5", "2025-02-30T10:02:45_sb01.hdf5", "2025-01-01T24:00:00_sb01.hdf5"])
def test_impossible_timestamps(name):
    with pytest.raises(InputFileError, match="invalid timestamp"):
        parse_subband_filename(name)


def test_format_round_trip():
    ts = datetime(2025, 6, 1, 10, 0, 7, tzinfo=timezone.utc)
    for sb in range(NSUBBANDS):
        name = format_subband_filename(ts, sb)
        assert parse_subband_filename(name).timestamp == ts
        assert parse_subband_filename(name).subband == sb
    assert format_subband_filename(ts, 4) == "2025-06-01T10:00:07_sb04.hdf5"


def test_format_converts_to_utc_and_drops_fraction():
    pst = timezone(timedelta(hours=-8))
    assert format_subband_filename(datetime(2025, 6, 1, 2, 0, 7, 999000, tzinfo=pst), 0) == "2025-06-01T10:00:07_sb00.hdf5"
    assert format_subband_filename(datetime(2025, 6, 1, 10, 0, 7), 1) == "2025-06-01T10:00:07_sb01.hdf5"


@pytest.mark.parametrize("sb", [-1, 16])
def test_format_rejects_bad_subband(sb):
    with pytest.raises(ValueError, match="out of range"):
        format_subband_filename(datetime(2025, 6, 1, tzinfo=timezone.utc), sb)


@pytest.mark.parametrize(
    "name",
    [
        "2025-10-02T10:02:45_sb03.hdf5\n",  # `$` in the pattern accepted a trailing newline
        "2025-10-02T10:02:45_sb03.hdf5\r\n",
        "2025-10-02T10:02:45_sb0\u0663.hdf5",  # Arabic-Indic digit 3: int() would read it as 3
        "\u0662025-10-02T10:02:45_sb03.hdf5",
    ],
)
def test_names_with_trailing_newline_or_non_ascii_digits_are_refused(name):
    assert not is_subband_filename(name)
    assert not is_subband_filename(Path("/data/incoming") / name)
    with pytest.raises(InputFileError, match="not a DSA-110 subband file name"):
        parse_subband_filename(name)
