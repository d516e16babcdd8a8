"""The server-rendered pages of ``contimg web`` (Jinja2 templates, no JavaScript) and the login (see
:mod:`contimg.web.app`)."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from contimg.db import views
from contimg.web.api import CUTOUT_EPOCHS
from contimg.web.auth import COOKIE, Identity
from contimg.web.context import WebContext, context, found, operator, reader

log = logging.getLogger(__name__)

router = APIRouter(tags=["pages"])


def night_bounds(night: date) -> tuple[datetime, datetime]:
    """The UTC day ``night``: [00:00, 24:00)."""
    start = datetime(night.year, night.month, night.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def log_tail(group: dict[str, Any], lines: int = 20) -> list[str]:
    """The last lines of the group's newest imager log (WSClean's), if any."""
    for img in reversed(group.get("images") or []):
        path = (img.get("files") or {}).get("log")
        if path and Path(path).is_file():
            try:
                with open(path, "rb") as fh:
                    fh.seek(0, 2)
                    fh.seek(max(0, fh.tell() - 16384))
                    text = fh.read().decode(errors="replace")
            except OSError:
                return []
            return text.splitlines()[-lines:]
    return []


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, night: date | None = None, ctx: WebContext = Depends(context),
             who: Identity | None = Depends(reader)) -> HTMLResponse:
    """The night overview: its groups on a time line with stage, QA and rms (default: the newest group's night)."""
    if night is None:
        newest = ctx.read(lambda s: views.groups_page(s, limit=1))["items"]
        night = (datetime.fromisoformat(newest[0]["timestamp"]).date() if newest
                 else datetime.now(timezone.utc).date())
    start, end = night_bounds(night)
    groups = ctx.read(lambda s: views.groups_page(s, start=start, end=end, limit=5000, newest_first=False))
    summary = ctx.read(lambda s: views.night_summary(s, start, end))
    for g in groups["items"]:
        g["left_pct"] = round(100 * (datetime.fromisoformat(g["timestamp"]) - start).total_seconds() / 86400, 3)
    return ctx.page(request, "overview.html", night=night, prev_night=night - timedelta(days=1),
                    next_night=night + timedelta(days=1), groups=groups["items"], counts=summary["counts"])


@router.get("/groups/{key}", response_class=HTMLResponse)
def group_page(request: Request, key: str, message: str | None = None, ctx: WebContext = Depends(context),
               who: Identity | None = Depends(reader)) -> HTMLResponse:
    """A group's products, QA, calibration, timings and log, with the reprocess form."""
    from contimg.pipeline.stages import STAGES

    g = found(ctx.read(lambda s: views.group_detail(s, key)), f"group {key}")
    return ctx.page(request, "group.html", g=g, stages=STAGES, message=message, log_tail=log_tail(g))


@router.post("/groups/{key}/reprocess")
def group_reprocess_form(key: str, from_stage: str = Form(""), tier: str = Form(""),
                         ctx: WebContext = Depends(context), who: Identity = Depends(operator)) -> RedirectResponse:
    """The group page's reprocess form (operator)."""
    runs = ctx.reprocess([key], who=who, from_stage=from_stage, tier=tier)
    msg = f"reprocessing {key} (run {runs[0]['run'][:8]})" if runs else "nothing to do"
    return RedirectResponse(f"/groups/{quote(key)}?message={quote(msg)}", status_code=303)


@router.get("/sources", response_class=HTMLResponse)
def sources_list(request: Request, name: str | None = None, order: str = "significance",
                 offset: int = Query(0, ge=0), ctx: WebContext = Depends(context),
                 who: Identity | None = Depends(reader)) -> HTMLResponse:
    """Catalogue sources with their statistics, searchable and ordered."""
    res = ctx.read(lambda s: views.sources_page(s, name=name, order=order, limit=ctx.page_size, offset=offset))
    return ctx.page(request, "sources.html", res=res, name=name or "", order=order, orders=list(views.SOURCE_ORDERS))


@router.get("/sources/{source_id}", response_class=HTMLResponse)
def source_page(request: Request, source_id: int, ctx: WebContext = Depends(context),
                who: Identity | None = Depends(reader)) -> HTMLResponse:
    """A source: statistics, light curve, candidates, cut-outs."""
    src = found(ctx.read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")
    n_epochs = len(src["light_curve"]["epoch_mjd"])
    return ctx.page(request, "source.html", s=src, n_cutouts=min(n_epochs, CUTOUT_EPOCHS), n_epochs=n_epochs)


@router.get("/candidates", response_class=HTMLResponse)
def candidates_list(request: Request, status: str | None = "open", message: str | None = None,
                    ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> HTMLResponse:
    """ESE candidates with the review form."""
    from contimg.db.models import CandidateStatus

    res = ctx.read(lambda s: views.candidates_page(s, status=status or None, limit=ctx.page_size))
    return ctx.page(request, "candidates.html", res=res, status=status or "", message=message,
                    statuses=[s.value for s in CandidateStatus])


@router.post("/candidates/{candidate_id}/status")
def candidate_status_form(candidate_id: int, status: str = Form(...), notes: str = Form(""),
                          ctx: WebContext = Depends(context), who: Identity = Depends(operator)) -> RedirectResponse:
    """The candidate list's review form (operator)."""
    ctx.set_candidate_status(candidate_id, status, notes, who)
    return RedirectResponse(f"/candidates?message={quote(f'candidate {candidate_id} is now {status}')}",
                            status_code=303)


@router.get("/new-sources", response_class=HTMLResponse)
def new_sources_list(request: Request, status: str | None = "open", message: str | None = None,
                     ctx: WebContext = Depends(context), who: Identity | None = Depends(reader)) -> HTMLResponse:
    """New-source candidates with their cut-outs and the review form."""
    from contimg.db.models import CandidateStatus

    res = ctx.read(lambda s: views.new_sources_page(s, status=status or None, limit=ctx.page_size))
    return ctx.page(request, "new_sources.html", res=res, status=status or "", message=message,
                    statuses=[s.value for s in CandidateStatus])


@router.post("/new-sources/{candidate_id}/status")
def new_source_status_form(candidate_id: int, status: str = Form(...), notes: str = Form(""),
                           ctx: WebContext = Depends(context), who: Identity = Depends(operator)) -> RedirectResponse:
    """The new-source list's review form (operator)."""
    ctx.set_candidate_status(candidate_id, status, notes, who, kind="new")
    return RedirectResponse(f"/new-sources?message={quote(f'new-source candidate {candidate_id} is now {status}')}",
                            status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", failed: bool = False,
               ctx: WebContext = Depends(context)) -> HTMLResponse:
    """The login form."""
    return ctx.page(request, "login.html", next=next if next.startswith("/") else "/", failed=failed)


@router.post("/login")
def login(user: str = Form(...), password: str = Form(...), next: str = Form("/"),
          ctx: WebContext = Depends(context)) -> RedirectResponse:
    """Check the password; on success set the session cookie and go to ``next`` (a path on this server)."""
    who = ctx.auth.login(user, password)
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    if who is None:
        return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(COOKIE, ctx.auth.cookie_for(who), max_age=int(ctx.settings.web.session_hours * 3600),
                    httponly=True, samesite="strict", path="/")
    log.info("web: %s logged in as %s", who.user, who.role)
    return resp


@router.post("/logout")
def logout() -> RedirectResponse:
    """Forget the session cookie."""
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
