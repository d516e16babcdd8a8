"""Bad input, incomplete groups, reruns: clear errors, nothing half-written left behind."""

from __future__ import annotations

import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
from casacore import tables

from conftest import simulate_single_subband, snapshot

from contimg.conversion import combine_parts, convert_group, part_path, plan_group, write_subband_part
from contimg.errors import InputFileError, PermanentError, StagingFullError, TransientError, ValidationError


def _convert_fails(files, tmp_path, match):
    out_dir = tmp_path / "ms"
    out_dir.mkdir(exist_ok=True)
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    before = snapshot(out_dir), snapshot(staging)
    with pytest.raises(InputFileError, match=match) as info:
        convert_group(files, out_dir / "group.ms", staging_dir=staging, processes=2)
    assert (snapshot(out_dir), snapshot(staging)) == before, "conversion left files behind"
    assert isinstance(info.value, PermanentError)
    return str(info.value)


def test_truncated_file(group_copy, tmp_path):
    victim = group_copy[5]
    size = victim.stat().st_size
    with open(victim, "r+b") as fh:
        fh.truncate(size // 2)
    msg = _convert_fails(group_copy, tmp_path, "truncated|corrupt")
    assert victim.name in msg


def test_corrupt_file(group_copy, tmp_path):
    victim = group_copy[2]
    with open(victim, "r+b") as fh:
        fh.seek(0)
        fh.write(np.random.default_rng(3).bytes(4096))
    msg = _convert_fails(group_copy, tmp_path, "cannot read as HDF5")
    assert victim.name in msg


def test_non_finite_visibilities_are_flagged_and_counted(group_copy, tmp_path):
    """NaNs inside the visibilities (damaged data, not headers) are flagged, never written as data."""
    victim = next(f for f in group_copy if f.name.endswith("_sb04.hdf5"))
    with h5py.File(victim, "r+") as fh:
        vis = fh["Data"]["visdata"]
        row = vis[100]
        if row.dtype.names:
            row[row.dtype.names[0]] = np.nan
        else:
            row[:] = np.nan
        vis[100] = row
    plan = plan_group(group_copy)
    result = convert_group(group_copy, tmp_path / "out.ms", staging_dir=tmp_path / "staging", processes=1)
    assert result.Nflagged_nonfinite == plan.Nfreqs_subband * plan.ms.Npols
    with tables.table(str(tmp_path / "out.ms"), ack=False) as t:
        data, flags = t.getcol("DATA", 100, 1)[0], t.getcol("FLAG", 100, 1)[0]
    c = slice(plan.channel_offset(4), plan.channel_offset(4) + plan.Nfreqs_subband)
    assert flags[c].all() and not data[c].any() and np.isfinite(data).all()
    assert not flags[: c.start].any()


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"n_antennas": 7}, r"antenna count \(Nants_data\) disagrees"),
        ({"dec_deg": 36.0}, r"pointing declination \(deg\) disagrees"),
        ({"channels_per_subband": 2}, r"channel width \(Hz\) disagrees"),
    ],
)
def test_file_disagreeing_with_its_group(group_copy, tmp_path, option, match):
    odd = simulate_single_subband(tmp_path, 6, **option)
    target = next(f for f in group_copy if f.name.endswith("_sb06.hdf5"))
    target.unlink()
    odd_path = target.with_name(odd.name)
    shutil.copy2(odd, odd_path)
    files = sorted(target.parent.glob("*.hdf5"))
    msg = _convert_fails(files, tmp_path, match)
    assert odd_path.name in msg
    assert "sb06" in msg


def test_same_subband_twice(group_copy, tmp_path):
    dup = group_copy[0].with_name("2025-06-01T10:00:09_sb00.hdf5")
    shutil.copy2(group_copy[0], dup)
    _convert_fails(group_copy + [dup], tmp_path, "given twice")


def test_incomplete_group_flags_missing_subbands(calibrator_ms, group_copy, tmp_path):
    """13 of 16 subbands: missing channels flagged with zero weight, the others unshifted."""
    full_ms, _, full_plan = calibrator_ms
    missing = {0, 7, 15}
    files = [f for f in group_copy if int(f.name[-7:-5]) not in missing]
    result = convert_group(files, tmp_path / "part.ms", staging_dir=tmp_path / "staging", processes=2)
    assert result.missing_subbands == sorted(missing)
    assert result.validation["ok"]
    with tables.table(str(tmp_path / "part.ms"), ack=False) as t, tables.table(str(full_ms), ack=False) as f:
        data, flags, weight = t.getcol("DATA"), t.getcol("FLAG"), t.getcol("WEIGHT_SPECTRUM")
        full = f.getcol("DATA")
        cross = t.getcol("ANTENNA1") != t.getcol("ANTENNA2")
    with tables.table(str(tmp_path / "part.ms" / "SPECTRAL_WINDOW"), ack=False) as s:
        freqs = s.getcell("CHAN_FREQ", 0)
    assert np.array_equal(freqs, full_plan.ms.freq_array)
    nsb = full_plan.Nfreqs_subband
    for sb in range(16):
        c = slice(full_plan.channel_offset(sb), full_plan.channel_offset(sb) + nsb)
        if sb in missing:
            assert flags[:, c].all() and not weight[:, c].any() and not data[:, c].any()
        else:
            assert not flags[cross, c].any()
            assert np.allclose(data[:, c], full[:, c], rtol=1e-6, atol=1e-6)
    # sb00 is the top of the band, sb15 the bottom
    assert full_plan.channel_offset(0) == 15 * nsb and full_plan.channel_offset(15) == 0


def test_staging_full_is_transient(calibrator_group, tmp_path):
    """A real tiny tmpfs as staging: ENOSPC becomes StagingFullError (transient) naming the group."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tiny tmpfs")
    files, _ = calibrator_group
    plan = plan_group(files)
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount tmpfs here")
    try:
        with pytest.raises(StagingFullError, match=plan.group_id) as info:
            write_subband_part(plan, files[0], mnt)
        assert isinstance(info.value, TransientError)
        assert "sb00" in str(info.value)
        # the free-space check bypassed: the write itself hits ENOSPC, same error, no debris
        import contimg.conversion.subband as subband

        real = subband.shutil.disk_usage
        subband.shutil.disk_usage = lambda p: real(p)._replace(free=1 << 40)
        try:
            with pytest.raises(StagingFullError, match="full"):
                write_subband_part(plan, files[0], mnt)
        finally:
            subband.shutil.disk_usage = real
        assert not any(p.is_file() for p in mnt.rglob("*")), "debris left in staging"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_rerun_is_idempotent_and_failed_rerun_keeps_the_finished_ms(calibrator_group, tmp_path):
    files, _ = calibrator_group
    staging = tmp_path / "staging"
    out = tmp_path / "ms" / "g.ms"
    plan = plan_group(files)
    parts = [write_subband_part(plan, f, staging) for f in files[:3]]
    again = write_subband_part(plan.to_dict(), files[0], staging)  # rerun: same path, replaced atomically
    assert again == parts[0] == part_path(plan, 0, staging)
    assert sorted(p.name for p in again.parent.iterdir()) == ["sb00.part", "sb01.part", "sb02.part"]
    (again.parent / ".sb01.part.tmp-99999").mkdir()  # a step-1 attempt killed mid-write
    result = combine_parts(plan, parts, out)
    assert result.subbands == [0, 1, 2]
    assert not any(p.exists() for p in parts), "parts not cleaned"
    assert not again.parent.exists(), "staging debris left"
    # the chord's step 2 retried after success: parts gone, the MS is revalidated
    again = combine_parts(plan.to_dict(), parts, out)
    assert again.validation["ok"] and again.subbands == [0, 1, 2]
    with tables.table(str(out), ack=False) as t:
        before = t.getcol("DATA")
    # a failing rerun (corrupt part) leaves the finished MS untouched
    bad = part_path(plan, 0, staging)
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "meta.json").write_text("{not json")
    stamp = snapshot(out.parent)
    with pytest.raises(InputFileError, match="unreadable conversion part"):
        combine_parts(plan, [bad], out)
    assert snapshot(out.parent) == stamp
    with tables.table(str(out), ack=False) as t:
        assert np.array_equal(t.getcol("DATA"), before)


def test_validation_failure_publishes_nothing(calibrator_group, tmp_path, monkeypatch):
    """A validation failure raises ValidationError naming group and check; the old MS survives."""
    import contimg.conversion.validate as validate

    files, _ = calibrator_group
    plan = plan_group(files[:2])
    out = tmp_path / "g.ms"
    combine_parts(plan, [write_subband_part(plan, f, tmp_path / "s") for f in files[:2]], out)
    stamp = snapshot(tmp_path / "g.ms")
    monkeypatch.setattr(validate, "UVW_TOLERANCE_REL", 0.0)
    parts = [write_subband_part(plan, f, tmp_path / "s") for f in files[:2]]
    with pytest.raises(ValidationError, match=rf"group {plan.group_id}: .* uvw: max error"):
        combine_parts(plan, parts, out)
    assert snapshot(tmp_path / "g.ms") == stamp
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_frequencies_off_the_grid_are_refused_not_shifted(group_copy, tmp_path):
    """A subband whose frequencies do not sit where its name says is an error, never moved."""
    victim = next(f for f in group_copy if f.name.endswith("_sb09.hdf5"))
    with h5py.File(victim, "r+") as fh:
        fh["Header"]["freq_array"][...] = fh["Header"]["freq_array"][()] + 100e3
    msg = _convert_fails(group_copy, tmp_path, "off the group's subband grid")
    assert victim.name in msg and "sb09" in msg


def test_file_named_for_the_wrong_subband(group_copy, tmp_path):
    """sb04's data under an sb05 name (sb05 absent) would land 11.7 MHz off: refused."""
    sb04 = next(f for f in group_copy if f.name.endswith("_sb04.hdf5"))
    sb05 = next(f for f in group_copy if f.name.endswith("_sb05.hdf5"))
    sb05.unlink()
    renamed = sb05.with_name(sb05.name)
    shutil.copy2(sb04, renamed)
    files = sorted(sb04.parent.glob("*.hdf5"))
    msg = _convert_fails(files, tmp_path, "off the group's subband grid")
    assert renamed.name in msg and "sb05 expected" in msg


def test_part_writers_are_spawned_once_casatools_is_loaded():
    """Forking a process that loaded casatools (gRPC threads) can hang the child; `contimg run` converts its
    second group after calibrating the first in the same process, so its part writers must be spawned."""
    import subprocess
    import sys

    code = ("from contimg.conversion.group import mp_context\n"
            "before = mp_context().get_start_method()\n"
            "import casatools  # noqa: F401\n"
            "print(before, mp_context().get_start_method())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["fork", "spawn"]
