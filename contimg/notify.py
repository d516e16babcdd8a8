"""Notifications: a JSON webhook and e-mail when something needs a person, rate-limited across the cluster.

:func:`notify` sends one event (``group_failed``, ``qa_failed``, ``ese_candidate``: see
:data:`contimg.config.NOTIFY_EVENTS`) to the webhook and/or the SMTP recipients of
``settings.notify``. It never raises into the pipeline: a webhook or mail server that is down is
logged with the reason (secrets masked) and the stage goes on. Each attempt is bounded by its
timeout (``notify.webhook_timeout_s``, ``notify.smtp_timeout_s``).

The rate limit (at most one message per event kind per ``notify.rate_limit_s``) must hold across
every Celery worker process on every node, so its state is a small JSON file on the shared data
root, ``<data_root>/state/notify.json``, read and written under an exclusive ``fcntl.flock`` of
``notify.lock`` beside it. A message held back is counted (with its subject) and summarised in the
next message of its kind. A window's slot is taken before sending, so a dead webhook costs its
timeout once per window, not once per event. If the state file cannot be used, a limiter in this
process takes over (with a warning).

The webhook receives::

    {"kind": "group_failed", "subject": "...", "text": "...", "data": {...},
     "suppressed": 2, "suppressed_subjects": ["...", "..."], "sent_at": "2025-10-02T10:05:00+00:00",
     "host": "node1"}

Example
-------
>>> from contimg.notify import notify
>>> notify(settings, "group_failed", "group 2025-10-02T10:02:45 failed",  # doctest: +SKIP
...        "convert: InputFileError: ...", {"group_key": "2025-10-02T10:02:45"})
Delivery(status='sent', channels={'webhook': 'sent'})
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from contimg.config import NOTIFY_EVENTS, Settings
from contimg.secrets import mask_text, settings_secrets

log = logging.getLogger(__name__)

__all__ = ["Delivery", "RateLimiter", "notify"]

STATE_FILE = "notify.json"
LOCK_FILE = "notify.lock"
MAX_SUBJECTS = 10
"""Subjects of held-back messages kept for the summary (the count is exact)."""

Status = Literal["disabled", "suppressed", "sent", "failed"]


@dataclass(frozen=True)
class Delivery:
    """What :func:`notify` did."""

    status: Status
    """``disabled`` (event not chosen or nothing configured), ``suppressed`` (rate limit), ``sent`` (every channel
    accepted it) or ``failed`` (at least one channel did not; the reasons are logged)."""
    channels: dict[str, str] = field(default_factory=dict)
    """``webhook``/``smtp`` → ``sent`` or the (masked) reason it failed."""


@dataclass(frozen=True)
class _Slot:
    allowed: bool
    suppressed: int = 0
    subjects: tuple[str, ...] = ()
    since: float | None = None


def _take(state: dict[str, Any], kind: str, subject: str, now: float, window_s: float) -> _Slot:
    """Update ``state`` for one event of ``kind`` at ``now``: take the window's slot, or count the event."""
    entry = state.get(kind) or {}
    last = entry.get("last_sent")
    # |now - last|: a process that read the clock before it waited for the lock comes a little before the
    # message sent while it waited, and is in that message's window; a clock stepped back by more than a
    # window starts a new one
    if window_s > 0 and isinstance(last, (int, float)) and abs(now - last) < window_s:
        entry["suppressed"] = int(entry.get("suppressed", 0)) + 1
        subjects = list(entry.get("subjects", []))
        if len(subjects) < MAX_SUBJECTS:
            subjects.append(subject)
        entry["subjects"] = subjects
        entry.setdefault("suppressed_since", now)
        state[kind] = entry
        return _Slot(False)
    slot = _Slot(True, int(entry.get("suppressed", 0)), tuple(entry.get("subjects", [])),
                 entry.get("suppressed_since"))
    state[kind] = {"last_sent": now, "suppressed": 0, "subjects": []}
    return slot


class RateLimiter:
    """At most one message per event kind per window, shared through a JSON file under an ``flock``.

    Parameters
    ----------
    state_dir
        Directory of ``notify.json`` and ``notify.lock`` (``settings.paths.state``, on the shared data root).
    window_s
        The window (``notify.rate_limit_s``); 0 lets every message through.
    """

    _local: dict[str, dict[str, Any]] = {}
    """The fallback limiter of this process, by state directory."""
    _local_lock = threading.Lock()

    def __init__(self, state_dir: Path, window_s: float):
        self.state_dir = Path(state_dir)
        self.window_s = window_s

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Path]:
        path = self.state_dir / STATE_FILE
        with open(self.state_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield path
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def take(self, kind: str, subject: str, now: float) -> _Slot:
        """Take the window's slot for ``kind`` (allowed, with what was held back since) or count this one.

        Parameters
        ----------
        kind
            The event kind (each has its own window).
        subject
            The message's subject (kept for the summary if it is held back).
        now
            The time (Unix seconds).

        Returns
        -------
        _Slot
            ``allowed``, and for an allowed one the number and subjects of those held back since the last.
        """
        try:
            with self._locked() as path:
                try:
                    state = json.loads(path.read_text())
                    if not isinstance(state, dict):
                        raise ValueError("not an object")
                except FileNotFoundError:
                    state = {}
                except ValueError as exc:
                    log.warning("notification rate limit: %s is not valid (%s); starting afresh", path, exc)
                    state = {}
                slot = _take(state, kind, subject, now, self.window_s)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(state))
                os.replace(tmp, path)
                return slot
        except OSError as exc:
            log.warning("notification rate limit: cannot use %s (%s); limiting in this process only",
                        self.state_dir / STATE_FILE, exc)
            with self._local_lock:
                state = self._local.setdefault(str(self.state_dir), {})
                return _take(state, kind, subject, now, self.window_s)


def _summary(kind: str, slot: _Slot) -> str:
    if not slot.suppressed:
        return ""
    since = (dt.datetime.fromtimestamp(slot.since, dt.timezone.utc).isoformat(timespec="seconds")
             if slot.since else "the last message")
    more = slot.suppressed - len(slot.subjects)
    lines = [f"{slot.suppressed} earlier {kind} notification(s) were suppressed by the rate limit since {since}:"]
    lines += [f"  - {s}" for s in slot.subjects]
    if more > 0:
        lines.append(f"  - ... and {more} more")
    return "\n".join(lines)


def _host_label(url: str) -> str:
    """``scheme://host:port`` of a URL: what a log line may say about the webhook (its path holds the token)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "(unparsable URL)"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _post(url: str, payload: Mapping[str, Any], timeout_s: float) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "contimg"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the operator's URL
        response.read(65536)


def _mail(settings: Settings, subject: str, text: str) -> None:
    cfg = settings.notify
    assert cfg.smtp_host is not None  # checked by the caller
    msg = EmailMessage()
    msg["Subject"] = f"[contimg] {subject}"
    msg["From"] = cfg.smtp_from
    msg["To"] = ", ".join(cfg.smtp_to)
    msg.set_content(text)
    with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s) as smtp:
        if cfg.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if cfg.smtp_user:
            smtp.login(cfg.smtp_user, cfg.smtp_password.get_secret_value() if cfg.smtp_password else "")
        smtp.send_message(msg)


def notify(settings: Settings, kind: str, subject: str, text: str, data: Mapping[str, Any] | None = None, *,
           now: float | None = None) -> Delivery:
    """Send one event to the configured webhook and e-mail recipients, rate-limited; never raises.

    Parameters
    ----------
    settings
        The settings: ``notify`` (channels, events, rate limit), the data root's state directory (the
        limiter's file) and every secret (masked in the log).
    kind
        The event kind, one of :data:`contimg.config.NOTIFY_EVENTS`; a kind not in ``notify.events`` is not sent.
    subject
        One line: the e-mail's subject, the webhook's ``subject``.
    text
        The message body (the summary of held-back messages of this kind is appended).
    data
        Details for machines (group key, image path, candidate ids ...): the webhook's ``data``.
    now
        The time (Unix seconds) for the rate limit; default: the clock's. For tests.

    Returns
    -------
    Delivery
        ``disabled``, ``suppressed``, ``sent`` or ``failed``, with each channel's outcome.
    """
    try:
        return _notify(settings, kind, subject, text, dict(data or {}), time.time() if now is None else now)
    except Exception as exc:  # noqa: BLE001 - a notification must never break the stage that raised it
        log.warning("notification %s (%s) not sent: %s", kind, subject,
                    mask_text(_reason(exc), _secrets(settings)), exc_info=log.isEnabledFor(logging.DEBUG))
        return Delivery("failed", {"error": mask_text(_reason(exc), _secrets(settings))})


def _secrets(settings: Settings) -> list[str]:
    try:
        return settings_secrets(settings)
    except Exception:  # noqa: BLE001
        return []


def _notify(settings: Settings, kind: str, subject: str, text: str, data: dict[str, Any], now: float) -> Delivery:
    cfg = settings.notify
    if kind not in NOTIFY_EVENTS:
        raise ValueError(f"unknown notification kind {kind!r}; kinds: {', '.join(NOTIFY_EVENTS)}")
    if kind not in cfg.events or not cfg.enabled:
        return Delivery("disabled")
    slot = RateLimiter(settings.paths.state, cfg.rate_limit_s).take(kind, subject, now)
    if not slot.allowed:
        log.info("notification %s (%s) held back by the rate limit (notify.rate_limit_s = %g)",
                 kind, subject, cfg.rate_limit_s)
        return Delivery("suppressed")
    summary = _summary(kind, slot)
    body = f"{text}\n\n{summary}" if summary else text
    secrets = _secrets(settings)
    channels: dict[str, str] = {}
    if cfg.webhook_url is not None:
        url = cfg.webhook_url.get_secret_value()
        payload = {"kind": kind, "subject": subject, "text": body, "data": data, "suppressed": slot.suppressed,
                   "suppressed_subjects": list(slot.subjects),
                   "sent_at": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
                   "host": socket.gethostname()}
        try:
            _post(url, payload, cfg.webhook_timeout_s)
            channels["webhook"] = "sent"
        except (OSError, ValueError, urllib.error.URLError) as exc:  # timeouts and refusals are OSErrors
            channels["webhook"] = mask_text(_reason(exc), secrets)
            log.warning("notification %s (%s): webhook %s failed: %s", kind, subject, _host_label(url),
                        channels["webhook"])
    if cfg.smtp_host is not None and cfg.smtp_to:
        try:
            _mail(settings, subject, body)
            channels["smtp"] = "sent"
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            channels["smtp"] = mask_text(_reason(exc), secrets)
            log.warning("notification %s (%s): mail through SMTP server %s:%d failed: %s", kind, subject,
                        cfg.smtp_host, cfg.smtp_port, channels["smtp"])
    ok = all(v == "sent" for v in channels.values())
    if ok:
        log.info("notification %s sent (%s): %s", kind, ", ".join(channels), subject)
    return Delivery("sent" if ok else "failed", channels)
