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

Modules: :mod:`contimg.web.api` (the JSON API, files, pictures), :mod:`contimg.web.pages` (pages, login),
:mod:`contimg.web.context` (what every request shares), :mod:`contimg.web.auth` (logins and roles).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from contimg import __version__
from contimg.config import Settings
from contimg.web.context import HERE, WebContext

log = logging.getLogger(__name__)

__all__ = ["create_app"]


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
    from contimg.web import api, pages

    init_db(settings)
    ctx = WebContext(settings, enqueue=enqueue)
    app = FastAPI(title="contimg", version=__version__,
                  description="DSA-110 continuum imaging: groups, products, QA, light curves and ESE candidates.")
    app.state.context = ctx
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"] if exc.headers else "/login", status_code=303)
        if request.url.path.startswith(("/api/", "/files/")) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        # a page, not a Basic-auth challenge: browsers log in on /login (the error page links to it)
        return ctx.templates.TemplateResponse(request, "error.html", {"status": exc.status_code, "detail": exc.detail,
                                                                      "who": ctx.identity(request)},
                                              status_code=exc.status_code)

    return app
