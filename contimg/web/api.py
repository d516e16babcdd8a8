"""The JSON API of ``contimg web``, the product files and the pictures drawn on request (see :mod:`contimg.web.app`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response

from contimg.db import views
from contimg.web.auth import Identity
from contimg.web.context import WebContext, context, found, mjd_label, operator, reader

router = APIRouter()

SERVED_SUFFIXES = (".png", ".fits", ".log", ".json", ".txt", ".csv")
"""File types ``/files/`` serves from the data root."""
CUTOUT_EPOCHS = 12
"""The source page shows cut-outs of this many most recent epochs."""
LIMIT = Query(None, ge=1, le=5000, description="rows per page (default settings.web.page_size)")
OFFSET = Query(0, ge=0)


@router.get("/healthz", tags=["status"])
def healthz() -> dict[str, str]:
    """Liveness for container health checks: open, reveals nothing."""
    return {"status": "ok"}


@router.get("/api/status", tags=["status"])
def api_status(ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """Group counts by state, the newest groups, queue lengths and the workers present."""
    from contimg.cluster.status import collect_status

    return collect_status(ctx.settings)


@router.get("/api/groups", tags=["groups"])
def api_groups(state: str | None = None, qa: str | None = None, start: datetime | None = None,
               end: datetime | None = None, limit: int | None = LIMIT, offset: int = OFFSET,
               order: str = Query("newest", pattern="^(newest|oldest)$"), ctx: WebContext = Depends(context),
               who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """Groups by state with their stage timings, QA verdicts and image rms (paged)."""
    return ctx.read(lambda s: views.groups_page(s, state=state, qa=qa, start=start, end=end,
                                                limit=limit or ctx.page_size, offset=offset,
                                                newest_first=order == "newest"))


@router.get("/api/groups/{key}", tags=["groups"])
def api_group(key: str, ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """One group with its files, every attempt's stage timings, its MS, calibration and images."""
    return found(ctx.read(lambda s: views.group_detail(s, key)), f"group {key}")


@router.post("/api/groups/{key}/reprocess", tags=["actions"])
def api_reprocess_group(key: str, body: dict[str, Any] = Body(default={}), ctx: WebContext = Depends(context),
                        who: Identity = Depends(operator)) -> dict[str, Any]:
    """Reprocess one group (operator), optionally from a stage and with an imaging tier."""
    return {"runs": ctx.reprocess([key], who=who, from_stage=body.get("from_stage"), tier=body.get("tier"))}


@router.post("/api/reprocess", tags=["actions"])
def api_reprocess_range(body: dict[str, Any] = Body(...), ctx: WebContext = Depends(context),
                        who: Identity = Depends(operator)) -> dict[str, Any]:
    """Reprocess every group in a time range (operator): ``start``, ``end`` (ISO), ``from_stage``, ``tier``."""
    if not body.get("start") and not body.get("end"):
        raise HTTPException(422, "give start and/or end of the range")
    return {"runs": ctx.reprocess(None, who=who, start=body.get("start"), end=body.get("end"),
                                  from_stage=body.get("from_stage"), tier=body.get("tier"))}


@router.get("/api/images", tags=["products"])
def api_images(qa: str | None = None, start_mjd: float | None = None, end_mjd: float | None = None,
               pb_corrected: bool | None = None, limit: int | None = LIMIT, offset: int = OFFSET,
               ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """Images with their QA verdicts (paged, newest first)."""
    return ctx.read(lambda s: views.images_page(s, qa=qa, start_mjd=start_mjd, end_mjd=end_mjd,
                                                pb_corrected=pb_corrected, limit=limit or ctx.page_size,
                                                offset=offset))


@router.get("/api/images/{image_id}", tags=["products"])
def api_image(image_id: int, ctx: WebContext = Depends(context),
              who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """One image with its QA details and its group."""
    return found(ctx.read(lambda s: views.image_detail(s, image_id)), f"image {image_id}")


@router.get("/api/calibration-sets", tags=["products"])
def api_calsets(limit: int | None = LIMIT, offset: int = OFFSET, ctx: WebContext = Depends(context),
                who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """Calibration sets with their tables, validity windows, QA and plots."""
    return ctx.read(lambda s: views.calibration_sets_page(s, limit=limit or ctx.page_size, offset=offset))


@router.get("/api/sources", tags=["science"])
def api_sources(name: str | None = None, min_flux_jy: float | None = None, min_significance: float | None = None,
                order: str = "significance", limit: int | None = LIMIT, offset: int = OFFSET,
                ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """Catalogue sources with their variability statistics (paged)."""
    return ctx.read(lambda s: views.sources_page(s, name=name, min_flux_jy=min_flux_jy,
                                                 min_significance=min_significance, order=order,
                                                 limit=limit or ctx.page_size, offset=offset))


@router.get("/api/sources/{source_id}", tags=["science"])
def api_source(source_id: int, ctx: WebContext = Depends(context),
               who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """A source with its statistics, candidates and light curve."""
    return found(ctx.read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")


@router.get("/api/candidates", tags=["science"])
def api_candidates(status: str | None = None, min_significance: float | None = None, limit: int | None = LIMIT,
                   offset: int = OFFSET, ctx: WebContext = Depends(context),
                   who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """ESE candidates, most significant first (``status=open``: new or confirmed)."""
    return ctx.read(lambda s: views.candidates_page(s, status=status, min_significance=min_significance,
                                                    limit=limit or ctx.page_size, offset=offset))


@router.post("/api/candidates/{candidate_id}/status", tags=["actions"])
def api_candidate_status(candidate_id: int, body: dict[str, Any] = Body(...), ctx: WebContext = Depends(context),
                         who: Identity = Depends(operator)) -> dict[str, Any]:
    """Set a candidate's review status (operator): ``status`` and optional ``notes``."""
    if not body.get("status"):
        raise HTTPException(422, "give a status")
    return ctx.set_candidate_status(candidate_id, str(body["status"]), body.get("notes"), who)


@router.get("/api/new-sources", tags=["science"])
def api_new_sources(status: str | None = None, min_significance: float | None = None, limit: int | None = LIMIT,
                    offset: int = OFFSET, ctx: WebContext = Depends(context),
                    who: Identity | None = Depends(reader)) -> dict[str, Any]:
    """New-source candidates with their detections, most significant first (``status=open``: new or confirmed)."""
    return ctx.read(lambda s: views.new_sources_page(s, status=status, min_significance=min_significance,
                                                     limit=limit or ctx.page_size, offset=offset))


@router.post("/api/new-sources/{candidate_id}/status", tags=["actions"])
def api_new_source_status(candidate_id: int, body: dict[str, Any] = Body(...), ctx: WebContext = Depends(context),
                          who: Identity = Depends(operator)) -> dict[str, Any]:
    """Set a new-source candidate's review status (operator): ``status`` and optional ``notes``."""
    if not body.get("status"):
        raise HTTPException(422, "give a status")
    return ctx.set_candidate_status(candidate_id, str(body["status"]), body.get("notes"), who, kind="new")


# ------------------------------------------------------------------ files and pictures
@router.get("/files/{path:path}", tags=["products"])
def files(path: str, ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> FileResponse:
    """A product file (PNG, FITS, log) under the data root; anything outside it (links followed) is a 404."""
    target = (ctx.root / path).resolve()
    if not target.is_relative_to(ctx.root) or target.suffix.lower() not in SERVED_SUFFIXES or not target.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(target)


@router.get("/sources/{source_id}/lightcurve.png", tags=["pictures"])
def lightcurve_png(source_id: int, ctx: WebContext = Depends(context),
                   who: Identity | None = Depends(reader)) -> Response:
    """The source's light curve with upper limits, catalogue flux, statistics and ESE template."""
    from contimg.web.pictures import light_curve_png

    src = found(ctx.read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")
    return Response(light_curve_png(src), media_type="image/png")


@router.get("/sources/{source_id}/cutouts.png", tags=["pictures"])
def cutouts(source_id: int, epochs: int = Query(CUTOUT_EPOCHS, ge=1, le=60), ctx: WebContext = Depends(context),
            who: Identity | None = Depends(reader)) -> Response:
    """Cut-outs of the source in its last ``epochs`` images, on one colour scale."""
    from contimg.web.pictures import cutouts_png

    src = found(ctx.read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")
    lc = src["light_curve"]
    recent = list(zip(lc["image_path"], lc["epoch_mjd"], lc["qa_verdict"]))[-epochs:]
    if not recent:
        raise HTTPException(404, f"source {source_id} has no epochs")
    labels = [(path, mjd_label(mjd) + (" (QA fail)" if qa == "fail" else "")) for path, mjd, qa in recent]
    return Response(cutouts_png(labels, src["ra_deg"], src["dec_deg"], title=src["name"]), media_type="image/png")


@router.get("/images/{image_id}/cutout.png", tags=["pictures"])
def cutout_png(image_id: int, ra: float, dec: float, ctx: WebContext = Depends(context),
               who: Identity | None = Depends(reader)) -> Response:
    """A cut-out of one image at a position."""
    from contimg.web.pictures import cutouts_png

    img = found(ctx.read(lambda s: views.image_detail(s, image_id)), f"image {image_id}")
    return Response(cutouts_png([(img["path"], mjd_label(img["epoch_mjd"]))], ra, dec), media_type="image/png")
