"""Retention: delete the imaging products an operator chose not to keep, once their image has passed QA.

``settings.retention.delete_kinds`` names the kinds of an image set's manifest (``images.files``) to
delete (``psf``, ``model``, ``residual``, ``log``: what QA reads and the science never does), and
``after_hours`` how long after the image was recorded. Only image sets whose verdict is ``pass`` or
``warn`` lose files: a failed image keeps everything for inspection. A deleted file leaves the manifest
(so nothing offers a link to it); a file already gone is dropped from the manifest as well. The flat-noise
and the PB-corrected rows of a set share its files and are both updated. ``contimg reprocess --from-stage
image`` makes them again.

Run by beat every hour (``contimg.housekeeping.retention``) and by ``contimg retention [--dry-run]``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db import session_scope
from contimg.db.models import Image

log = logging.getLogger(__name__)

__all__ = ["RetentionReport", "apply_retention", "disk_usage"]

KEPT_VERDICTS = ("pass", "warn")
"""Image sets with these verdicts may lose the chosen files; a failed one keeps everything."""
_BATCH = 500


@dataclass
class RetentionReport:
    """What :func:`apply_retention` did (or, with ``dry_run``, would do)."""

    images: int = 0
    """Image rows whose manifest lost at least one kind."""
    files: int = 0
    """Files deleted."""
    bytes: int = 0
    """Their size."""
    missing: int = 0
    """Manifest entries whose file was already gone."""
    dry_run: bool = False
    paths: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["paths"] = self.paths[:50]
        del out["seen"]
        return out


def _prune(session: Session, rows: list[Image], kinds: tuple[str, ...], report: RetentionReport) -> None:
    for img in rows:
        files = dict(img.files or {})
        drop = [k for k in kinds if k in files]
        for kind in drop:
            path = Path(files.pop(kind))
            if str(path) in report.seen:  # the set's other row shares the file
                continue
            report.seen.add(str(path))
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                report.missing += 1
                continue
            report.files += 1
            report.bytes += size
            report.paths.append(str(path))
            if not report.dry_run:
                path.unlink(missing_ok=True)
        if drop:
            report.images += 1
            if not report.dry_run:
                img.files = files


def apply_retention(settings: Settings, *, now: datetime | None = None, dry_run: bool = False) -> RetentionReport:
    """Delete the ``settings.retention.delete_kinds`` files of image sets that passed QA long enough ago.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``retention``).
    now
        The current time (default: now, UTC).
    dry_run
        Only count what would be deleted.

    Returns
    -------
    RetentionReport
        Images touched, files deleted and their bytes, manifest entries whose file was already gone.
    """
    kinds = tuple(settings.retention.delete_kinds)
    report = RetentionReport(dry_run=dry_run)
    if not kinds:
        return report
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(hours=settings.retention.after_hours)
    last_id = 0
    while True:  # in batches, one transaction each: a long night never holds one write lock for long
        with session_scope(settings) as session:
            rows = list(session.scalars(
                select(Image).where(Image.id > last_id, Image.qa_verdict.in_(KEPT_VERDICTS),
                                    Image.created_at < cutoff, Image.files.is_not(None))
                .order_by(Image.id).limit(_BATCH)))
            if not rows:
                break
            last_id = rows[-1].id
            _prune(session, rows, kinds, report)
    if report.files or report.missing:
        log.info("retention%s: %d files (%.1f MB) of %d images deleted (%s); %d already gone",
                 " (dry run)" if dry_run else "", report.files, report.bytes / 1e6, report.images,
                 ", ".join(kinds), report.missing)
    return report


def disk_usage(settings: Settings) -> dict[str, int]:
    """Bytes under the data root by what they are: ``incoming``, ``ms``, ``caltables``, ``state``, and the
    image products by kind (``images/<kind>``: image, pbcor, pb, residual, model, psf, thumbnail, log)."""
    paths = settings.paths
    out: dict[str, int] = {}

    def size(root: Path) -> int:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    for name in ("incoming", "ms", "caltables", "state"):
        out[name] = size(getattr(paths, name))
    suffixes = {".image.pbcor.fits": "pbcor", ".image.fits": "image", ".pb.fits": "pb",
                ".residual.fits": "residual", ".model.fits": "model", ".psf.fits": "psf", ".png": "thumbnail",
                ".log": "log"}
    if paths.images.exists():
        for p in paths.images.rglob("*"):
            if p.is_file():
                kind = next((k for s, k in suffixes.items() if p.name.endswith(s)), "other")
                out[f"images/{kind}"] = out.get(f"images/{kind}", 0) + p.stat().st_size
    return out
