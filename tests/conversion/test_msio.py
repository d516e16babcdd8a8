"""Low-level MS writing (:mod:`contimg.conversion.msio`): column layout."""

from __future__ import annotations

import numpy as np

from contimg.conversion import msio


def _tile_shape(tb, column: str) -> list[int]:
    """The tile shape casacore uses for ``column`` (its hypercube's, casacore's Fortran order)."""
    cubes = tb.getdminfo(column)["SPEC"]["HYPERCUBES"]
    return [list(np.asarray(c["TileShape"])) for c in cubes.values()][0]


def test_an_added_column_is_tiled_like_data(tmp_path):
    """casacore takes tile shapes in its own (Fortran) axis order: (Npols, Nfreqs, rows). A column added
    later must get DATA's tiles (whole cells, the same rows per tile), not a tile casacore had to shrink
    to a few channels because the axes were given in numpy order."""
    tb = msio.create_main_table(tmp_path / "t.ms", nrows=50, Nfreqs=64, Npols=2)
    try:
        msio.add_data_column(tb, "EXTRA_DATA", "test visibilities (Jy)")
        msio.add_data_column(tb, "EXTRA_WEIGHT", "test weights", valuetype="float")
        assert _tile_shape(tb, "DATA")[:2] == [2, 64]
        assert _tile_shape(tb, "EXTRA_DATA") == _tile_shape(tb, "DATA")
        assert _tile_shape(tb, "EXTRA_WEIGHT") == _tile_shape(tb, "WEIGHT_SPECTRUM")
        assert tb.getcell("EXTRA_DATA", 0).shape == tb.getcell("DATA", 0).shape == (64, 2)
    finally:
        tb.close()
