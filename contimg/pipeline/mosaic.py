"""Nightly mosaics, the database side of :mod:`contimg.imaging.mosaic`: choose a night's images, record the mosaic.

A *night* is a UTC day, as for the night summary (:func:`contimg.pipeline.nightly.write_night_summary`):
DSA-110 drifts through all 24 h of RA, and the day is the unit operators look back at.
:func:`night_inputs` reads the day's product sets from the images table's manifest (``images.files``:
the flat-noise ``image`` and its primary-beam image ``pb``), in time order; a set is left out if any
of its rows has the verdict ``fail`` (a failed image feeds no science) or its manifest names no
primary-beam image. :func:`make_night_mosaic` combines the rest with
:func:`contimg.imaging.mosaic.make_mosaic` into ``<data root>/mosaics/<YYYY-MM-DD>/`` and records it in
the ``mosaics`` table (one row per night; a re-run replaces the row and the files).

The beat job ``contimg.mosaic.nightly`` (:func:`run_nightly_mosaic`) mosaics the UTC day before it
fires (``CONTIMG_MOSAIC__HOUR_UTC``); ``contimg mosaic --night YYYY-MM-DD`` any day.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.db import products, run_transaction
from contimg.db.products import night_window
from contimg.db.models import Mosaic

log = logging.getLogger(__name__)

__all__ = ["make_night_mosaic", "night_inputs", "night_window", "run_nightly_mosaic"]

def night_inputs(session: Session, start_mjd: float, end_mjd: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The product sets imaged with mid-time in ``[start_mjd, end_mjd)``: those to combine and those left out.

    Parameters
    ----------
    session
        An open session.
    start_mjd, end_mjd
        The time window (MJD).

    Returns
    -------
    tuple[list[dict], list[dict]]
        The sets to combine, in time order: ``image_id`` (the flat-noise row), ``image``, ``pb``, ``rms_jy``,
        ``epoch_mjd`` (mid-time), ``verdict``; and the sets left out: ``image``, ``epoch_mjd``, ``reason``.
    """
    from contimg.verdict import worst

    use: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    for key, members in products.image_sets(session, start_mjd, end_mjd).items():
        files = next((m.files for m in members if m.files), None) or {}
        flat = next((m for m in members if not m.pb_corrected), None)
        verdict = worst([m.qa_verdict for m in members])
        mid = members[0].mid_mjd
        if "fail" in {m.qa_verdict for m in members}:
            left_out.append({"image": key, "epoch_mjd": mid, "reason": "QA verdict fail"})
        elif flat is None or not files.get("pb"):
            left_out.append({"image": key, "epoch_mjd": mid,
                             "reason": "no flat-noise image row" if flat is None else "no primary-beam image in the manifest"})
        else:
            use.append({"image_id": flat.id, "image": str(files.get("image") or flat.path), "pb": str(files["pb"]),
                        "rms_jy": flat.rms_jy, "epoch_mjd": mid, "verdict": verdict})
    use.sort(key=lambda r: r["epoch_mjd"])
    return use, left_out


def make_night_mosaic(settings: Any, day: dt.date, *, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Mosaic the QA-passed images of the UTC day ``day`` and record it (see the module docstring).

    Parameters
    ----------
    settings
        The application settings (database, data root, ``mosaic`` section).
    day
        The UTC day.
    out_dir
        Where the tiles go; default ``<data root>/mosaics/<YYYY-MM-DD>``.

    Returns
    -------
    dict
        ``status`` (``ok`` or ``skipped`` with ``reason``), ``night``, ``n_inputs``, ``n_excluded``, ``excluded``,
        and for ``ok`` the mosaic's ``mosaic_id``, ``manifest``, ``n_tiles``, beam, noise and ``tiles``.
    """
    from contimg.imaging.mosaic import MosaicInput, make_mosaic

    start, end = night_window(day)
    use, left_out = run_transaction(settings, lambda s: night_inputs(s, start, end), readonly=True)
    base = {"night": day.isoformat(), "n_inputs": len(use), "n_excluded": len(left_out), "excluded": left_out}
    if not use:
        log.info("mosaic %s: no QA-passed images (%d left out)", day.isoformat(), len(left_out))
        return {"status": "skipped", "reason": "no QA-passed images that day", **base}
    out = Path(out_dir) if out_dir is not None else Path(settings.data_root) / "mosaics" / day.isoformat()
    cfg = settings.mosaic
    inputs = [MosaicInput(Path(u["image"]), Path(u["pb"]), u["rms_jy"], label=str(u["image_id"])) for u in use]
    result = make_mosaic(inputs, out, name=f"mosaic_{day.isoformat()}", pb_limit=cfg.pb_limit,
                         tile_size=cfg.tile_size)
    tiles = result.tiles
    noise = [t["min_noise_jy"] for t in tiles]
    medians = [t["median_noise_jy"] for t in tiles]
    fields = {
        "start_mjd": start, "end_mjd": end, "manifest": str(result.manifest), "n_inputs": len(use),
        "n_tiles": len(tiles), "image_ids": [u["image_id"] for u in use], "n_excluded": len(left_out),
        "ra_start_deg": result.grid["ra_west_deg"], "ra_end_deg": result.grid["ra_east_deg"],
        "dec_min_deg": result.grid["dec_min_deg"], "dec_max_deg": result.grid["dec_max_deg"],
        "beam_major_arcsec": result.beam[0], "beam_minor_arcsec": result.beam[1], "beam_pa_deg": result.beam[2],
        "freq_hz": result.freq_hz, "min_noise_jy": min(noise) if noise else None,
        "median_noise_jy": float(sorted(medians)[len(medians) // 2]) if medians else None,
        "seconds": result.seconds, "tiles": tiles,
    }

    def record(session: Session) -> int:
        return products.upsert_mosaic(session, night=day, **fields).id

    mosaic_id = run_transaction(settings, record)
    log.info("mosaic %s: %d images in %d tiles (%.0f s), %s", day.isoformat(), len(use), len(tiles),
             result.seconds, result.manifest)
    return {"status": "ok", "mosaic_id": mosaic_id, **base, **{k: v for k, v in fields.items() if k != "image_ids"}}


def get_mosaic(session: Session, day: dt.date) -> Mosaic | None:
    """The recorded mosaic of ``day`` (None: none)."""
    return session.scalar(select(Mosaic).where(Mosaic.night == day))


def run_nightly_mosaic(settings: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The beat job's entry point: :func:`make_night_mosaic` of the UTC day before ``now`` (default: now)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    day = now.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
    return make_night_mosaic(settings, day)
