"""Who is asking: the web's two logins (viewer, operator), by HTTP Basic or by a signed session cookie.

Roles: a *viewer* may read; an *operator* may also change state (reprocess,
candidate review). Passwords come from the settings
(``CONTIMG_WEB__VIEWER_PASSWORD``, ``CONTIMG_WEB__OPERATOR_PASSWORD``); a role
without a password has no login. Read-only pages and API are open when
``web.public_read`` is true (the default), else they need a login too.

API clients send ``Authorization: Basic ...``; browsers log in on ``/login``
and get a cookie ``contimg_session`` = ``user|role|expiry|HMAC-SHA256``,
signed with ``web.session_secret`` (a random key per server process when
unset), ``HttpOnly`` and ``SameSite=Strict`` (a form on another site cannot
post with it). Passwords are compared in constant time and never logged; the
cookie carries no secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from contimg.config import WebSettings

log = logging.getLogger(__name__)

COOKIE = "contimg_session"
ROLES = ("viewer", "operator")


@dataclass(frozen=True)
class Identity:
    user: str
    role: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


class Authenticator:
    """Checks passwords and signs and reads session cookies for one server."""

    def __init__(self, web: WebSettings) -> None:
        self.web = web
        key = web.session_secret.get_secret_value() if web.session_secret is not None else ""
        self._key = key.encode() if key else secrets.token_bytes(32)
        self._logins: dict[str, tuple[str, str]] = {}
        for role, user, password in (("viewer", web.viewer_user, web.viewer_password),
                                     ("operator", web.operator_user, web.operator_password)):
            if password is not None and password.get_secret_value():
                self._logins[user] = (role, password.get_secret_value())

    @property
    def has_operator(self) -> bool:
        return any(role == "operator" for role, _ in self._logins.values())

    def login(self, user: str, password: str) -> Identity | None:
        """The identity of ``user`` if ``password`` is theirs, else None (constant time in the password)."""
        role, expected = self._logins.get(user, ("", ""))
        ok = hmac.compare_digest(password.encode(), expected.encode()) if expected else False
        if not ok:
            log.warning("web: failed login for user %r", user)
            return None
        return Identity(user, role)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def cookie_for(self, identity: Identity, *, now: float | None = None) -> str:
        """The session cookie's value for ``identity``, valid ``web.session_hours``."""
        expiry = int((now or time.time()) + self.web.session_hours * 3600)
        payload = f"{identity.user}|{identity.role}|{expiry}"
        return f"{payload}|{self._sign(payload)}"

    def from_cookie(self, value: str | None, *, now: float | None = None) -> Identity | None:
        """The identity a cookie carries, None if it is missing, forged, expired or names an unknown login."""
        if not value or value.count("|") != 3:
            return None
        user, role, expiry, sig = value.split("|")
        if not hmac.compare_digest(sig, self._sign(f"{user}|{role}|{expiry}")):
            return None
        try:
            if int(expiry) < (now or time.time()):
                return None
        except ValueError:
            return None
        known = self._logins.get(user)
        if known is None or known[0] != role:  # a login removed or changed role since the cookie was made
            return None
        return Identity(user, role)

    def from_basic(self, header: str | None) -> Identity | None:
        """The identity of an ``Authorization: Basic`` header with a right password, else None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.login(user, password)
