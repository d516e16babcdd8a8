"""Retention: the chosen imaging products go once their image passed QA long enough ago; nothing else does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

NOW = datetime(2025, 6, 3, 12, 0, tzinfo=timezone.utc)
SUFFIXES = {"image": ".image.fits", "pbcor": ".image.pbcor.fits", "pb": ".pb.fits", "residual": ".residual.fits",
            "model": ".model.fits", "psf": ".psf.fits", "thumbnail": ".png", "log": ".wsclean.log"}
"""The product names of an image set (contimg.imaging.run)."""
KINDS = tuple(SUFFIXES)


def _image_set(settings, name: str, verdict: str, age_h: float) -> dict[str, str]:
    """Files of one image set on disk and its two rows (flat-noise, PB-corrected) sharing the manifest."""
    from contimg.db import session_scope
    from contimg.db.models import Image

    d = settings.paths.images / name
    d.mkdir(parents=True)
    files = {}
    for kind in KINDS:
        p = d / f"{name}{SUFFIXES[kind]}"
        p.write_bytes(b"x" * 1000)
        files[kind] = str(p)
    with session_scope(settings) as s:
        for pb in (False, True):
            s.add(Image(path=files["pbcor" if pb else "image"], pb_corrected=pb, qa_verdict=verdict, files=files,
                        created_at=NOW - timedelta(hours=age_h)))
    return files


def _manifests(settings) -> dict[str, set[str]]:
    from contimg.db import session_scope
    from contimg.db.models import Image

    with session_scope(settings, readonly=True) as s:
        return {i.path: set(i.files) for i in s.scalars(select(Image))}


def test_passed_images_lose_the_chosen_files_failed_and_recent_ones_keep_all(db_settings):
    from contimg.pipeline.retention import apply_retention

    settings = db_settings.model_copy(update={"retention": db_settings.retention.model_copy(
        update={"delete_kinds": ["psf", "model", "residual"], "after_hours": 24})})
    old_pass = _image_set(settings, "old_pass", "pass", 48)
    old_warn = _image_set(settings, "old_warn", "warn", 30)
    old_fail = _image_set(settings, "old_fail", "fail", 48)
    new_pass = _image_set(settings, "new_pass", "pass", 2)

    dry = apply_retention(settings, now=NOW, dry_run=True)
    assert (dry.images, dry.files, dry.bytes) == (4, 6, 6000)  # two sets x three kinds; both rows of each set
    assert all(__import__("os").path.exists(p) for p in old_pass.values())

    report = apply_retention(settings, now=NOW)
    assert (report.files, report.bytes) == (6, 6000) and report.images == 4  # both rows of both sets updated
    for files in (old_pass, old_warn):
        for kind, path in files.items():
            assert __import__("os").path.exists(path) == (kind not in ("psf", "model", "residual")), (kind, path)
    for files in (old_fail, new_pass):
        assert all(__import__("os").path.exists(p) for p in files.values())
    manifests = _manifests(settings)
    assert manifests[old_pass["image"]] == manifests[old_pass["pbcor"]] == set(KINDS) - {"psf", "model", "residual"}
    assert manifests[old_fail["image"]] == set(KINDS) and manifests[new_pass["pbcor"]] == set(KINDS)

    again = apply_retention(settings, now=NOW)
    assert (again.files, again.images, again.missing) == (0, 0, 0)


def test_nothing_is_deleted_by_default(db_settings):
    from contimg.pipeline.retention import apply_retention

    files = _image_set(db_settings, "kept", "pass", 1000)
    report = apply_retention(db_settings, now=NOW)
    assert report.files == 0 and all(__import__("os").path.exists(p) for p in files.values())


def test_beat_runs_retention_every_hour(settings):
    from beat.schedule import beat_schedule

    entry = beat_schedule(settings)["retention"]
    assert entry["task"] == "contimg.housekeeping.retention"
    assert entry["schedule"].minute == {settings.retention.minute} and len(entry["schedule"].hour) == 24


def test_disk_usage_by_kind(db_settings):
    from contimg.pipeline.retention import disk_usage

    settings = db_settings
    _image_set(settings, "one", "pass", 1)
    (settings.paths.ms / "a.ms").mkdir(parents=True)
    (settings.paths.ms / "a.ms" / "table.f1").write_bytes(b"y" * 5000)
    usage = disk_usage(settings)
    assert usage["ms"] == 5000 and usage["images/psf"] == 1000 and usage["images/pbcor"] == 1000
    assert usage["images/image"] == 1000 and usage["images/thumbnail"] == 1000
