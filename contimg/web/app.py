"""``contimg web``: the operator's window, a FastAPI application over the products database.

:func:`create_app` builds it for one :class:`~contimg.config.Settings`. It is a
thin shell: every read is a query of :mod:`contimg.db.views` in one read-only
session, every action a call of the library (:func:`contimg.api.reprocess`,
:func:`contimg.db.science.set_candidate_status`).

JSON API (OpenAPI at ``/docs`` and ``/openapi.json``)::

    GET  /api/status                     group counts by state, queue lengths, workers present
    GET  /api/groups                     ?state= &qa= &start= &end= &limit= &offset= &order=oldest
    GET  /api/groups/{key}               one group: files, attempts, MS, calibration, images with QA
    POST /api/groups/{key}/reprocess     operator: {"from_stage": ..., "tier": ...}
    POST /api/reprocess                  operator: {"start": ..., "end": ..., "from_stage": ..., "tier": ...}
    GET  /api/images                     ?qa= &start_mjd= &end_mjd= &pb_corrected= &limit= &offset=
    GET  /api/images/{id}
    GET  /api/calibration-sets
    GET  /api/sources                    ?name= &min_flux_jy= &min_significance= &order= &limit= &offset=
    GET  /api/sources/{id}               with statistics, candidates and light curve
    GET  /api/candidates                 ?status= &min_significance= &limit= &offset=
    POST /api/candidates/{id}/status     operator: {"status": ..., "notes": ...}

Pages (server-rendered, no JavaScript build): ``/`` the night overview,
``/groups/{key}``, ``/sources``, ``/sources/{id}``, ``/candidates``, ``/login``.
Pictures: ``/sources/{id}/lightcurve.png``, ``/sources/{id}/cutouts.png`` (its last
epochs on one colour scale), ``/images/{id}/cutout.png?ra=&dec=``, and
the products' own PNG and FITS files under ``/files/<path in the data root>``
(resolved, and refused outside the data root: no path traversal).

Authentication and roles: :mod:`contimg.web.auth`.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from fastapi import Body, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from contimg import __version__
from contimg.config import Settings
from contimg.db import run_transaction, views
from contimg.errors import ContimgError, ValidationError
from contimg.web.auth import COOKIE, Authenticator, Identity

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SERVED_SUFFIXES = (".png", ".fits", ".log", ".json", ".txt", ".csv")
"""File types ``/files/`` serves from the data root."""
CUTOUT_EPOCHS = 12
"""The source page shows cut-outs of this many most recent epochs."""


def _night_bounds(night: date) -> tuple[datetime, datetime]:
    start = datetime(night.year, night.month, night.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _mjd(dt: datetime) -> float:
    return (dt.replace(tzinfo=timezone.utc) - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400


def create_app(settings: Settings, *, enqueue: Callable[..., Any] | None = None) -> FastAPI:
    """The web application for ``settings``.

    Parameters
    ----------
    settings
        The pipeline settings: database, data root, ``web`` (logins, paging).
    enqueue
        The publisher of reprocessing runs (``enqueue(group_key, token, from_stage)``); default
        :func:`contimg.api.configured_publisher` (the Celery canvas), made on the first action.

    Returns
    -------
    fastapi.FastAPI
        The application (serve it with uvicorn).
    """
    from contimg.db import init_db

    init_db(settings)
    web = settings.web
    auth = Authenticator(web)
    root = Path(settings.data_root).resolve()
    publisher: dict[str, Any] = {"enqueue": enqueue}
    app = FastAPI(title="contimg", version=__version__,
                  description="DSA-110 continuum imaging: groups, products, QA, light curves and ESE candidates.")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    def file_url(path: str | None) -> str | None:
        if not path:
            return None
        try:
            rel = Path(path).resolve().relative_to(root)
        except ValueError:
            return None
        return "/files/" + quote(rel.as_posix())

    templates.env.filters["file_url"] = file_url
    templates.env.filters["mjd_iso"] = lambda m: "-" if m is None else (
        datetime(1858, 11, 17) + timedelta(days=float(m))).strftime("%Y-%m-%d %H:%M:%S")
    templates.env.filters["mjy"] = lambda v: "-" if v is None else f"{v * 1e3:.3g}"
    templates.env.filters["flux"] = lambda v: "-" if v is None else (f"{v:.4g} Jy" if abs(v) >= 1 else
                                                                     f"{v * 1e3:.3g} mJy")
    templates.env.filters["num"] = lambda v, fmt=".3g": "-" if v is None else format(v, fmt)
    templates.env.globals["version"] = __version__

    # -------------------------------------------------------------- who is asking
    def identity(request: Request) -> Identity | None:
        return auth.from_basic(request.headers.get("authorization")) or auth.from_cookie(request.cookies.get(COOKIE))

    def reader(request: Request) -> Identity | None:
        who = identity(request)
        if who is None and not web.public_read:
            if request.url.path.startswith("/api/") or request.url.path.startswith("/files/"):
                raise HTTPException(401, "log in to read", headers={"WWW-Authenticate": 'Basic realm="contimg"'})
            raise HTTPException(303, "log in to read", headers={"Location": f"/login?next={quote(request.url.path)}"})
        return who

    def operator(request: Request) -> Identity:
        who = identity(request)
        if who is None:
            if not auth.has_operator:
                raise HTTPException(403, "no operator login is configured (CONTIMG_WEB__OPERATOR_PASSWORD)")
            raise HTTPException(401, "log in as an operator", headers={"WWW-Authenticate": 'Basic realm="contimg"'})
        if not who.operator:
            raise HTTPException(403, f"user {who.user!r} is a {who.role}; this needs an operator")
        return who

    def read(fn: Callable[[Any], Any]) -> Any:
        try:
            return run_transaction(settings, fn, readonly=True)
        except ValidationError as exc:
            raise HTTPException(422, str(exc)) from exc

    def found(value: Any, what: str) -> Any:
        if value is None:
            raise HTTPException(404, f"no such {what}")
        return value

    def page(request: Request, template: str, **context: Any) -> HTMLResponse:
        context.setdefault("who", identity(request))
        context.setdefault("can_act", auth.has_operator)
        return templates.TemplateResponse(request, template, context)

    def run_reprocess(keys: list[str] | None, *, start: str | None = None, end: str | None = None,
                      from_stage: str | None = None, tier: str | None = None) -> list[dict[str, str]]:
        from contimg.api import configured_publisher, reprocess

        if publisher["enqueue"] is None:
            publisher["enqueue"] = configured_publisher(settings)
        try:
            handles = reprocess(keys, start=start, end=end, from_stage=from_stage or None, tier=tier or None,
                                settings=settings, enqueue=publisher["enqueue"])
        except ContimgError as exc:
            raise HTTPException(409 if "in progress" in str(exc) or "pending" in str(exc) else 422, str(exc)) from exc
        return [{"group_key": h.group_key, "run": h.token} for h in handles]

    # -------------------------------------------------------------- JSON API
    @app.get("/healthz", tags=["status"])
    def healthz() -> dict[str, str]:
        """Liveness for container health checks: open, reveals nothing."""
        return {"status": "ok"}

    @app.get("/api/status", tags=["status"])
    def api_status(who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """Group counts by state, the newest groups, queue lengths and the workers present."""
        from contimg.cluster.status import collect_status

        return collect_status(settings)

    @app.get("/api/groups", tags=["groups"])
    def api_groups(state: str | None = None, qa: str | None = None, start: datetime | None = None,
                   end: datetime | None = None, limit: int = Query(web.page_size, ge=1, le=5000),
                   offset: int = Query(0, ge=0), order: str = Query("newest", pattern="^(newest|oldest)$"),
                   who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """Groups by state with their stage timings, QA verdicts and image rms (paged)."""
        return read(lambda s: views.groups_page(s, state=state, qa=qa, start=start, end=end, limit=limit,
                                                offset=offset, newest_first=order == "newest"))

    @app.get("/api/groups/{key}", tags=["groups"])
    def api_group(key: str, who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """One group with its files, every attempt's stage timings, its MS, calibration and images."""
        return found(read(lambda s: views.group_detail(s, key)), f"group {key}")

    @app.post("/api/groups/{key}/reprocess", tags=["actions"])
    def api_reprocess_group(key: str, body: dict[str, Any] = Body(default={}),
                            who: Identity = Depends(operator)) -> dict[str, Any]:
        """Reprocess one group (operator), optionally from a stage and with an imaging tier."""
        runs = run_reprocess([key], from_stage=body.get("from_stage"), tier=body.get("tier"))
        log.info("web: %s asked to reprocess %s from %s", who.user, key, body.get("from_stage") or "the start")
        return {"runs": runs}

    @app.post("/api/reprocess", tags=["actions"])
    def api_reprocess_range(body: dict[str, Any] = Body(...), who: Identity = Depends(operator)) -> dict[str, Any]:
        """Reprocess every group in a time range (operator): ``start``, ``end`` (ISO), ``from_stage``, ``tier``."""
        if not body.get("start") and not body.get("end"):
            raise HTTPException(422, "give start and/or end of the range")
        runs = run_reprocess(None, start=body.get("start"), end=body.get("end"), from_stage=body.get("from_stage"),
                             tier=body.get("tier"))
        log.info("web: %s asked to reprocess %d groups (%s to %s)", who.user, len(runs), body.get("start"),
                 body.get("end"))
        return {"runs": runs}

    @app.get("/api/images", tags=["products"])
    def api_images(qa: str | None = None, start_mjd: float | None = None, end_mjd: float | None = None,
                   pb_corrected: bool | None = None, limit: int = Query(web.page_size, ge=1, le=5000),
                   offset: int = Query(0, ge=0), who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """Images with their QA verdicts (paged, newest first)."""
        return read(lambda s: views.images_page(s, qa=qa, start_mjd=start_mjd, end_mjd=end_mjd,
                                                pb_corrected=pb_corrected, limit=limit, offset=offset))

    @app.get("/api/images/{image_id}", tags=["products"])
    def api_image(image_id: int, who: Identity | None = Depends(reader)) -> dict[str, Any]:
        return found(read(lambda s: views.image_detail(s, image_id)), f"image {image_id}")

    @app.get("/api/calibration-sets", tags=["products"])
    def api_calsets(limit: int = Query(web.page_size, ge=1, le=5000), offset: int = Query(0, ge=0),
                    who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """Calibration sets with their tables, validity windows, QA and plots."""
        return read(lambda s: views.calibration_sets_page(s, limit=limit, offset=offset))

    @app.get("/api/sources", tags=["science"])
    def api_sources(name: str | None = None, min_flux_jy: float | None = None, min_significance: float | None = None,
                    order: str = "significance", limit: int = Query(web.page_size, ge=1, le=5000),
                    offset: int = Query(0, ge=0), who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """Catalogue sources with their variability statistics (paged)."""
        return read(lambda s: views.sources_page(s, name=name, min_flux_jy=min_flux_jy,
                                                 min_significance=min_significance, order=order, limit=limit,
                                                 offset=offset))

    @app.get("/api/sources/{source_id}", tags=["science"])
    def api_source(source_id: int, who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """A source with its statistics, candidates and light curve."""
        return found(read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")

    @app.get("/api/candidates", tags=["science"])
    def api_candidates(status: str | None = None, min_significance: float | None = None,
                       limit: int = Query(web.page_size, ge=1, le=5000), offset: int = Query(0, ge=0),
                       who: Identity | None = Depends(reader)) -> dict[str, Any]:
        """ESE candidates, most significant first (``status=open``: new or confirmed)."""
        return read(lambda s: views.candidates_page(s, status=status, min_significance=min_significance,
                                                    limit=limit, offset=offset))

    def _set_status(candidate_id: int, status: str, notes: str | None, who: Identity) -> dict[str, Any]:
        from contimg.db.science import set_candidate_status

        def _write(session) -> None:
            set_candidate_status(session, candidate_id, status, notes=notes or None)

        try:
            run_transaction(settings, _write)
        except ValidationError as exc:
            raise HTTPException(404 if "no candidate" in str(exc).lower() else 422, str(exc)) from exc
        log.info("web: %s set candidate %d to %s", who.user, candidate_id, status)
        return {"id": candidate_id, "status": status}

    @app.post("/api/candidates/{candidate_id}/status", tags=["actions"])
    def api_candidate_status(candidate_id: int, body: dict[str, Any] = Body(...),
                             who: Identity = Depends(operator)) -> dict[str, Any]:
        """Set a candidate's review status (operator): ``status`` and optional ``notes``."""
        if not body.get("status"):
            raise HTTPException(422, "give a status")
        return _set_status(candidate_id, str(body["status"]), body.get("notes"), who)

    # -------------------------------------------------------------- files and pictures
    @app.get("/files/{path:path}", tags=["products"])
    def files(path: str, who: Identity | None = Depends(reader)) -> FileResponse:
        """A product file (PNG, FITS, log) under the data root; anything outside it is refused."""
        target = (root / path).resolve()
        if not target.is_relative_to(root) or target.suffix.lower() not in SERVED_SUFFIXES:
            raise HTTPException(404, "no such file")
        if not target.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(target)

    @app.get("/sources/{source_id}/lightcurve.png", tags=["pictures"])
    def lightcurve_png(source_id: int, who: Identity | None = Depends(reader)) -> Response:
        from contimg.web.pictures import light_curve_png

        src = found(read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")
        return Response(light_curve_png(src), media_type="image/png")

    @app.get("/sources/{source_id}/cutouts.png", tags=["pictures"])
    def cutouts(source_id: int, epochs: int = Query(CUTOUT_EPOCHS, ge=1, le=60),
                who: Identity | None = Depends(reader)) -> Response:
        """Cut-outs of the source in its last ``epochs`` images, on one colour scale."""
        from contimg.web.pictures import cutouts_png

        src = found(read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")
        lc = src["light_curve"]
        recent = list(zip(lc["image_path"], lc["epoch_mjd"], lc["qa_verdict"]))[-epochs:]
        if not recent:
            raise HTTPException(404, f"source {source_id} has no epochs")
        labels = [(path, _mjd_label(mjd) + (" (QA fail)" if qa == "fail" else "")) for path, mjd, qa in recent]
        return Response(cutouts_png(labels, src["ra_deg"], src["dec_deg"], title=src["name"]),
                        media_type="image/png")

    @app.get("/images/{image_id}/cutout.png", tags=["pictures"])
    def cutout_png(image_id: int, ra: float, dec: float, who: Identity | None = Depends(reader)) -> Response:
        """A cut-out of one image at a position."""
        from contimg.web.pictures import cutouts_png

        img = found(read(lambda s: views.image_detail(s, image_id)), f"image {image_id}")
        return Response(cutouts_png([(img["path"], _mjd_label(img["mid_mjd"]))], ra, dec), media_type="image/png")

    # -------------------------------------------------------------- pages
    @app.get("/", response_class=HTMLResponse, tags=["pages"])
    def overview(request: Request, night: date | None = None, who: Identity | None = Depends(reader)) -> HTMLResponse:
        """The night overview: its groups on a time line with stage, QA and rms."""
        if night is None:
            newest = read(lambda s: views.groups_page(s, limit=1))["items"]
            night = (datetime.fromisoformat(newest[0]["timestamp"]).date() if newest
                     else datetime.now(timezone.utc).date())
        start, end = _night_bounds(night)
        groups = read(lambda s: views.groups_page(s, start=start, end=end, limit=5000, newest_first=False))
        summary = read(lambda s: views.night_summary(s, start, end))
        for g in groups["items"]:
            t = datetime.fromisoformat(g["timestamp"])
            g["left_pct"] = round(100 * (t - start).total_seconds() / 86400, 3)
        return page(request, "overview.html", night=night, prev_night=night - timedelta(days=1),
                    next_night=night + timedelta(days=1), groups=groups["items"], counts=summary["counts"])

    @app.get("/groups/{key}", response_class=HTMLResponse, tags=["pages"])
    def group_page(request: Request, key: str, message: str | None = None,
                   who: Identity | None = Depends(reader)) -> HTMLResponse:
        g = found(read(lambda s: views.group_detail(s, key)), f"group {key}")
        from contimg.pipeline.stages import STAGES

        return page(request, "group.html", g=g, stages=STAGES, message=message,
                    log_tail=_log_tail(g))

    @app.post("/groups/{key}/reprocess", tags=["pages"])
    def group_reprocess_form(key: str, from_stage: str = Form(""), tier: str = Form(""),
                             who: Identity = Depends(operator)) -> RedirectResponse:
        runs = run_reprocess([key], from_stage=from_stage or None, tier=tier or None)
        log.info("web: %s asked to reprocess %s from %s", who.user, key, from_stage or "the start")
        msg = f"reprocessing {key} (run {runs[0]['run'][:8]})" if runs else "nothing to do"
        return RedirectResponse(f"/groups/{quote(key)}?message={quote(msg)}", status_code=303)

    @app.get("/sources", response_class=HTMLResponse, tags=["pages"])
    def sources_list(request: Request, name: str | None = None, order: str = "significance",
                     offset: int = Query(0, ge=0), who: Identity | None = Depends(reader)) -> HTMLResponse:
        res = read(lambda s: views.sources_page(s, name=name, order=order, limit=web.page_size, offset=offset))
        return page(request, "sources.html", res=res, name=name or "", order=order, orders=list(views.SOURCE_ORDERS))

    @app.get("/sources/{source_id}", response_class=HTMLResponse, tags=["pages"])
    def source_page(request: Request, source_id: int, who: Identity | None = Depends(reader)) -> HTMLResponse:
        src = found(read(lambda s: views.source_detail(s, source_id)), f"source {source_id}")
        n_epochs = len(src["light_curve"]["epoch_mjd"])
        return page(request, "source.html", s=src, n_cutouts=min(n_epochs, CUTOUT_EPOCHS), n_epochs=n_epochs)

    @app.get("/candidates", response_class=HTMLResponse, tags=["pages"])
    def candidates_list(request: Request, status: str | None = "open", message: str | None = None,
                        who: Identity | None = Depends(reader)) -> HTMLResponse:
        res = read(lambda s: views.candidates_page(s, status=status or None, limit=web.page_size))
        from contimg.db.models import CandidateStatus

        return page(request, "candidates.html", res=res, status=status or "", message=message,
                    statuses=[s.value for s in CandidateStatus])

    @app.post("/candidates/{candidate_id}/status", tags=["pages"])
    def candidate_status_form(candidate_id: int, status: str = Form(...), notes: str = Form(""),
                              who: Identity = Depends(operator)) -> RedirectResponse:
        _set_status(candidate_id, status, notes, who)
        msg = f"candidate {candidate_id} is now {status}"
        return RedirectResponse(f"/candidates?message={quote(msg)}", status_code=303)

    @app.get("/login", response_class=HTMLResponse, tags=["pages"])
    def login_page(request: Request, next: str = "/", failed: bool = False) -> HTMLResponse:
        return page(request, "login.html", next=next if next.startswith("/") else "/", failed=failed)

    @app.post("/login", tags=["pages"])
    def login(user: str = Form(...), password: str = Form(...), next: str = Form("/")) -> RedirectResponse:
        who = auth.login(user, password)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        if who is None:
            return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, auth.cookie_for(who), max_age=int(web.session_hours * 3600), httponly=True,
                        samesite="strict", path="/")
        log.info("web: %s logged in as %s", who.user, who.role)
        return resp

    @app.post("/logout", tags=["pages"])
    def logout() -> RedirectResponse:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"] if exc.headers else "/login", status_code=303)
        if request.url.path.startswith(("/api/", "/files/")) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        # a page, not a Basic-auth challenge: browsers log in on /login (the error page links to it)
        return templates.TemplateResponse(request, "error.html", {"status": exc.status_code, "detail": exc.detail,
                                                                  "who": identity(request)},
                                          status_code=exc.status_code)

    return app


def _mjd_label(mjd: float | None) -> str:
    if mjd is None:
        return "?"
    return (datetime(1858, 11, 17) + timedelta(days=float(mjd))).strftime("%Y-%m-%d %H:%M")


def _log_tail(group: dict[str, Any], lines: int = 20) -> list[str]:
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


__all__ = ["create_app"]
