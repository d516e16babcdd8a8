"""Keeping secrets out of output: passwords in URLs, known secret strings, log records.

contimg's settings carry secrets inside URLs (``CONTIMG_BROKER_URL``,
``CONTIMG_RESULT_BACKEND``, ``CONTIMG_DATABASE_URL``) and on their own
(``CONTIMG_MONITORING__FLOWER_PASSWORD``). Whatever prints or logs a URL passes it
through :func:`mask_url`; messages that may quote a URL or a password (exception
texts of Redis, SQLAlchemy ...) go through :func:`mask_text`. ``contimg`` installs
:class:`SecretMaskingFilter` on its log handlers, so a record that slipped through
is masked on its way out as well.

Examples
--------
>>> mask_url("redis://:s3cret@redis:6379/0")
'redis://:***@redis:6379/0'
>>> mask_url("postgresql+psycopg2://contimg:pw@postgres:5432/contimg")
'postgresql+psycopg2://contimg:***@postgres:5432/contimg'
>>> mask_url("redis://redis:6379/0")
'redis://redis:6379/0'
>>> mask_text("login as ops with s3cret failed", ["s3cret"])
'login as ops with *** failed'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:  # pragma: no cover
    from contimg.config import Settings

log = logging.getLogger(__name__)

MASK = "***"
"""What replaces a password."""

# ``scheme://userinfo@``: the userinfo runs to the last ``@`` before the end of the
# authority (``/ ? #``), the URL-list separator ``;``, whitespace or a quote, so
# an unencoded ``@`` inside a password is still covered.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#;'\"<>@]*(?:@[^\s/?#;'\"<>@]*)*)@")
# ``?password=...`` / ``&password=...`` (redis-py, libpq and kombu accept these).
_QUERY = re.compile(r"(?P<key>[?&](?:[A-Za-z_]*password|passwd|pwd)=)(?P<value>[^&\s#;,'\"<>]+)", re.IGNORECASE)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    user, sep, password = userinfo.partition(":")
    if not sep or not password:
        return match.group(0)
    return f"{match.group('scheme')}{user}:{MASK}@"


def mask_url(url: str) -> str:
    """``url`` with every password replaced by ``***``.

    Parameters
    ----------
    url
        A URL (``redis://:pw@host:6379/0``, ``redis://user:pw@host``,
        ``rediss://``, ``amqp://``, ``postgresql+psycopg2://user:pw@host/db`` ...),
        a ``;``-separated list of them (Celery's Redis Sentinel and failover
        brokers), or any text that contains URLs.

    Returns
    -------
    str
        The same text with the password of each URL's user information and
        the value of any ``password=``/``passwd=``/``pwd=`` query parameter
        replaced by ``***``. A URL without a password comes back unchanged;
        so does anything that is not a string or not a URL (non-strings are
        converted with ``str``). Never raises.

    Examples
    --------
    >>> mask_url("sentinel://:pw@s1:26379;sentinel://:pw@s2:26379")
    'sentinel://:***@s1:26379;sentinel://:***@s2:26379'
    >>> mask_url("redis://user:p@ss@host/0?password=pw&db=1")
    'redis://user:***@host/0?password=***&db=1'
    """
    try:
        text = url if isinstance(url, str) else str(url)
        if "://" not in text and "=" not in text:
            return text
        text = _USERINFO.sub(_mask_userinfo, text)
        return _QUERY.sub(lambda m: m.group("key") + MASK, text)
    except Exception:  # noqa: BLE001 - masking must never be the cause of a failure
        log.debug("could not mask a URL", exc_info=True)
        return MASK


def url_passwords(url: str | None) -> list[str]:
    """The passwords in ``url`` (each as written and percent-decoded), for :func:`mask_text`.

    Parameters
    ----------
    url
        A URL or a ``;``-separated list of URLs; ``None`` gives an empty list.

    Returns
    -------
    list of str
        Every non-empty password found in the user information or in a
        ``password=`` query parameter. Never raises.
    """
    if not url:
        return []
    found: list[str] = []
    try:
        for m in _USERINFO.finditer(str(url)):
            _, sep, password = m.group("userinfo").partition(":")
            if sep and password:
                found.append(password)
        found.extend(m.group("value") for m in _QUERY.finditer(str(url)))
        found += [unquote(p) for p in found]
    except Exception:  # noqa: BLE001
        log.debug("could not extract passwords from a URL", exc_info=True)
    return sorted({p for p in found if p}, key=len, reverse=True)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret string of ``settings``: the passwords of its URLs, Flower's and the web logins' passwords, the
    web's session key, the SMTP password and the notification webhook's URL (:func:`webhook_secrets`).

    Flower's built-in default password is not a secret (it is in the source) and
    is left out, or every "contimg" in a message would be masked.
    """
    secrets: list[str] = []
    for url in (settings.broker_url, settings.result_backend, settings.database_url):
        secrets += url_passwords(url)
    flower = settings.monitoring.flower_password.get_secret_value()
    if flower and flower != default_flower_password():
        secrets.append(flower)
    web = settings.web
    for secret in (web.viewer_password, web.operator_password, web.session_secret, settings.notify.smtp_password):
        if secret is not None and secret.get_secret_value():
            secrets.append(secret.get_secret_value())
    if settings.notify.webhook_url is not None:
        secrets += webhook_secrets(settings.notify.webhook_url.get_secret_value())
    return sorted(set(secrets), key=len, reverse=True)


def webhook_secrets(url: str) -> list[str]:
    """The secret parts of a webhook URL: the whole URL, its path and query, and any password in it.

    A webhook's token is usually in its path (``https://hooks.slack.com/services/T0/B0/XXXX``) or its
    query (``?token=...``), so everything after the host is treated as secret; the host alone is not.

    Parameters
    ----------
    url
        The webhook URL.

    Returns
    -------
    list of str
        The strings to mask (empty ones left out). Never raises.
    """
    from urllib.parse import urlsplit

    found = [url, *url_passwords(url)]
    try:
        parts = urlsplit(url)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        if tail.strip("/"):
            found += [tail, parts.path] if parts.path.strip("/") else [tail]
        if parts.query:
            found.append(parts.query)
    except ValueError:
        log.debug("could not split a webhook URL")
    return [s for s in dict.fromkeys(found) if s and s.strip("/")]


def default_flower_password() -> str:
    """The built-in default of ``monitoring.flower_password`` (documented, so not a secret)."""
    from contimg.config import MonitoringSettings

    value: Any = MonitoringSettings.model_fields["flower_password"].default
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the passwords of its URLs and every known secret string replaced by ``***``.

    Parameters
    ----------
    text
        A message, e.g. an exception's text.
    secrets
        Strings that must not appear (passwords, see :func:`settings_secrets`).
        An entry that is a URL (contains ``://``) stands for its passwords
        (:func:`url_passwords`), so the settings' URLs can be passed as they
        are; empty and ``None`` entries are ignored. Longer secrets are
        replaced first.

    Returns
    -------
    str
        The masked text. Never raises (non-strings are converted with ``str``).
    """
    try:
        out = mask_url(text if isinstance(text, str) else str(text))
        literal: set[str] = set()
        for s in secrets:
            if s:
                s = str(s)
                literal.update(url_passwords(s) if "://" in s else [s])
        for secret in sorted(literal, key=len, reverse=True):
            out = out.replace(secret, MASK)
        return out
    except Exception:  # noqa: BLE001
        log.debug("could not mask a message", exc_info=True)
        return MASK


class SecretMaskingFilter(logging.Filter):
    """A logging filter (for handlers) that masks URLs' passwords and known secrets in each record.

    Parameters
    ----------
    secrets
        Strings to remove besides the passwords of URLs (see :func:`settings_secrets`).

    Notes
    -----
    Install it on handlers, not loggers: a logger's filters do not see records
    propagated from its children. The message is formatted once and replaced
    by its masked text; a traceback (``exc_info``) is formatted and masked too.
    """

    def __init__(self, secrets: Iterable[str | None] = ()):
        super().__init__()
        self.secrets = tuple(str(s) for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let logging report it
            return True
        masked = mask_text(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.secrets)
        return True


def install_log_masking(secrets: Iterable[str | None] = (), logger: logging.Logger | None = None) -> None:
    """Add a :class:`SecretMaskingFilter` to every handler of ``logger`` (default: the root logger).

    Idempotent: a handler's earlier masking filter is replaced (with the new secrets).
    """
    target = logger or logging.getLogger()
    for handler in target.handlers:
        for old in [f for f in handler.filters if isinstance(f, SecretMaskingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(SecretMaskingFilter(secrets))
