"""What every request of ``contimg web`` shares: :class:`WebContext`, and the dependencies that find it.

:func:`contimg.web.app.create_app` builds one :class:`WebContext` per
application and keeps it in ``app.state.context``; the routes of
:mod:`contimg.web.api` and :mod:`contimg.web.pages` get it (and the caller's
identity) through FastAPI dependencies: :func:`reader` for anything that
reads, :func:`operator` for anything that changes state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from contimg import __version__
from contimg.config import Settings
from contimg.db import run_transaction
from contimg.errors import ContimgError, NotFoundError, ValidationError
from contimg.web.auth import COOKIE, Authenticator, Identity

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MJD_EPOCH = datetime(1858, 11, 17)


def mjd_label(mjd: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An MJD as a UTC date and time ("?" when unknown)."""
    return "?" if mjd is None else (MJD_EPOCH + timedelta(days=float(mjd))).strftime(fmt)


@dataclass
class WebContext:
    """One web application's settings, logins, templates and publisher."""

    settings: Settings
    enqueue: Callable[..., Any] | None = None
    """Publisher of reprocessing runs; None: :func:`contimg.api.configured_publisher`, made on first use."""
    auth: Authenticator = field(init=False)
    root: Path = field(init=False)
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.settings.web)
        self.root = Path(self.settings.data_root).resolve()
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.filters["file_url"] = self.file_url
        env.filters["mjd_iso"] = lambda m: "-" if m is None else mjd_label(m, "%Y-%m-%d %H:%M:%S")
        env.filters["mjy"] = lambda v: "-" if v is None else f"{v * 1e3:.3g}"
        env.filters["flux"] = lambda v: "-" if v is None else (f"{v:.4g} Jy" if abs(v) >= 1 else f"{v * 1e3:.3g} mJy")
        env.filters["num"] = lambda v, fmt=".3g": "-" if v is None else format(v, fmt)
        env.globals["version"] = __version__

    @property
    def page_size(self) -> int:
        return self.settings.web.page_size

    def file_url(self, path: str | None) -> str | None:
        """The ``/files/`` URL of a product file inside the data root (None outside it)."""
        if not path:
            return None
        try:
            rel = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return None
        return "/files/" + quote(rel.as_posix())

    def identity(self, request: Request) -> Identity | None:
        """Who sent ``request``: HTTP Basic, else the session cookie, else nobody."""
        return (self.auth.from_basic(request.headers.get("authorization"))
                or self.auth.from_cookie(request.cookies.get(COOKIE)))

    def read(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(session)`` in one read-only transaction; a ValidationError becomes a 422."""
        try:
            return run_transaction(self.settings, fn, readonly=True)
        except ValidationError as exc:
            raise HTTPException(422, str(exc)) from exc

    def page(self, request: Request, template: str, **context: Any) -> HTMLResponse:
        """A rendered page with the caller's identity and whether actions are possible.

        Parameters
        ----------
        request
            The request (for the identity and URL building).
        template
            The template's file name under ``templates/``.
        **context
            The template's variables.

        Returns
        -------
        fastapi.responses.HTMLResponse
        """
        context.setdefault("who", self.identity(request))
        context.setdefault("can_act", self.auth.has_operator)
        return self.templates.TemplateResponse(request, template, context)

    def reprocess(self, keys: list[str] | None, *, who: Identity, start: str | None = None, end: str | None = None,
                  from_stage: str | None = None, tier: str | None = None) -> list[dict[str, str]]:
        """Reprocess groups (:func:`contimg.api.reprocess`); a refusal becomes a 409 or 422 with its reason.

        Parameters
        ----------
        keys
            Group keys, or None for the range ``start``-``end``.
        who
            The operator asking (logged).
        start, end
            The time range (ISO), when ``keys`` is None.
        from_stage, tier
            The first stage and the imaging tier (None or "": the defaults).

        Returns
        -------
        list of dict
            ``{"group_key", "run"}`` per group.
        """
        from contimg.api import configured_publisher, reprocess

        if self.enqueue is None:
            self.enqueue = configured_publisher(self.settings)
        try:
            handles = reprocess(keys, start=start, end=end, from_stage=from_stage or None, tier=tier or None,
                                settings=self.settings, enqueue=self.enqueue)
        except ContimgError as exc:
            busy = "in progress" in str(exc) or "pending" in str(exc)
            raise HTTPException(409 if busy else 422, str(exc)) from exc
        log.info("web: %s asked to reprocess %s from %s", who.user,
                 ", ".join(h.group_key for h in handles) or "nothing", from_stage or "the start")
        return [{"group_key": h.group_key, "run": h.token} for h in handles]

    def set_candidate_status(self, candidate_id: int, status: str, notes: str | None, who: Identity, *,
                             kind: str = "ese") -> dict[str, Any]:
        """Set a candidate's review status (:func:`contimg.db.science.set_candidate_status`, or
        :func:`~contimg.db.science.set_new_source_status` for ``kind="new"``).

        Parameters
        ----------
        candidate_id
            The candidate.
        status
            Its new review status.
        notes
            Review notes (empty: none).
        who
            The operator (logged).

        Returns
        -------
        dict
            ``{"id", "status"}``; an unknown candidate is a 404, a refused change a 422 with its reason.
        """
        from contimg.db.science import set_candidate_status, set_new_source_status

        setter = set_new_source_status if kind == "new" else set_candidate_status
        try:
            run_transaction(self.settings, lambda s: setter(s, candidate_id, status, notes=notes or None))
        except ValidationError as exc:
            raise HTTPException(404 if "no candidate" in str(exc).lower() else 422, str(exc)) from exc
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        log.info("web: %s set %s candidate %d to %s", who.user, kind, candidate_id, status)
        return {"id": candidate_id, "status": status}


def context(request: Request) -> WebContext:
    """The application's :class:`WebContext` (a dependency)."""
    return request.app.state.context


def reader(request: Request) -> Identity | None:
    """Dependency of every read: the caller's identity; a login is needed unless ``web.public_read``."""
    ctx = context(request)
    who = ctx.identity(request)
    if who is None and not ctx.settings.web.public_read:
        if request.url.path.startswith(("/api/", "/files/")):
            raise HTTPException(401, "log in to read", headers={"WWW-Authenticate": 'Basic realm="contimg"'})
        raise HTTPException(303, "log in to read", headers={"Location": f"/login?next={quote(request.url.path)}"})
    return who


def operator(request: Request) -> Identity:
    """Dependency of every action: the caller, who must be logged in as an operator (401/403 otherwise)."""
    ctx = context(request)
    who = ctx.identity(request)
    if who is None:
        if not ctx.auth.has_operator:
            raise HTTPException(403, "no operator login is configured (CONTIMG_WEB__OPERATOR_PASSWORD)")
        raise HTTPException(401, "log in as an operator", headers={"WWW-Authenticate": 'Basic realm="contimg"'})
    if not who.operator:
        raise HTTPException(403, f"user {who.user!r} is a {who.role}; this needs an operator")
    return who


def found(value: Any, what: str) -> Any:
    """``value``, or a 404 naming ``what`` when it is None."""
    if value is None:
        raise HTTPException(404, f"no such {what}")
    return value
