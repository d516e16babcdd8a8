"""Notifications (:mod:`contimg.notify`): a webhook and e-mail, rate-limited across processes, never raising."""

from __future__ import annotations

import json
import logging
import multiprocessing
import socket
import time
from collections.abc import Iterator

import pytest

from notify_helpers import TOKEN, WebhookReceiver as _Hook


@pytest.fixture
def hook() -> Iterator[_Hook]:
    h = _Hook()
    yield h
    h.close()


def _settings(tmp_path, **notify):
    from contimg.config import load_settings

    s = load_settings(data_root=tmp_path / "data", staging_dir=tmp_path / "staging", notify=notify)
    s.paths.ensure()
    return s


def test_a_webhook_receives_the_event_as_json(tmp_path, clean_env, hook):
    from contimg.notify import notify

    settings = _settings(tmp_path, webhook_url=hook.url)
    out = notify(settings, "group_failed", "group 2025-10-02T10:02:45 failed", "convert: no files",
                 {"group_key": "2025-10-02T10:02:45", "error": "convert: no files"})
    assert out.status == "sent"
    (body,) = hook.bodies
    assert body["kind"] == "group_failed"
    assert body["subject"] == "group 2025-10-02T10:02:45 failed"
    assert "convert: no files" in body["text"]
    assert body["data"] == {"group_key": "2025-10-02T10:02:45", "error": "convert: no files"}
    assert body["suppressed"] == 0
    assert hook.paths == [f"/hooks/{TOKEN}"]


def test_events_not_chosen_and_nothing_configured_send_nothing(tmp_path, clean_env, hook):
    from contimg.notify import notify

    assert notify(_settings(tmp_path), "group_failed", "s", "t", {}).status == "disabled"
    settings = _settings(tmp_path, webhook_url=hook.url, events=["ese_candidate"])
    assert notify(settings, "group_failed", "s", "t", {}).status == "disabled"
    assert hook.bodies == []
    assert not (settings.paths.state / "notify.json").exists()


def test_the_rate_limit_sends_one_message_per_window_and_counts_the_rest(tmp_path, clean_env, hook):
    from contimg.notify import notify

    settings = _settings(tmp_path, webhook_url=hook.url, rate_limit_s=600)
    t0 = 1_000_000.0
    assert notify(settings, "group_failed", "first", "t", {}, now=t0).status == "sent"
    assert notify(settings, "group_failed", "second", "t", {}, now=t0 + 1).status == "suppressed"
    assert notify(settings, "group_failed", "third", "t", {}, now=t0 + 2).status == "suppressed"
    assert notify(settings, "qa_failed", "other kind", "t", {}, now=t0 + 3).status == "sent"  # its own window
    assert [b["subject"] for b in hook.bodies] == ["first", "other kind"]
    assert notify(settings, "group_failed", "next window", "t", {}, now=t0 + 601).status == "sent"
    last = hook.bodies[-1]
    assert last["subject"] == "next window"
    assert last["suppressed"] == 2
    assert last["suppressed_subjects"] == ["second", "third"]
    assert "2 earlier group_failed notification(s) were suppressed" in last["text"]


def _notify_in_child(root: str, url: str, subject: str, barrier) -> None:
    from pathlib import Path

    from contimg.config import load_settings
    from contimg.notify import notify

    settings = load_settings(data_root=Path(root), staging_dir=Path(root) / "staging",
                             notify={"webhook_url": url, "rate_limit_s": 600})
    barrier.wait()
    notify(settings, "group_failed", subject, "t", {})


def test_the_rate_limit_holds_across_processes_sharing_the_state_file(tmp_path, clean_env, hook):
    from contimg.notify import notify

    settings = _settings(tmp_path, webhook_url=hook.url, rate_limit_s=600)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, as on other nodes
    barrier = ctx.Barrier(4)
    children = [ctx.Process(target=_notify_in_child, args=(str(settings.data_root), hook.url, f"child {i}", barrier))
                for i in range(4)]
    for c in children:
        c.start()
    for c in children:
        c.join(60)
        assert c.exitcode == 0
    assert len(hook.bodies) == 1  # four quick failures in four processes: one message
    # the next window's message, from this process, counts the three that were suppressed
    state = json.loads((settings.paths.state / "notify.json").read_text())
    later = state["group_failed"]["last_sent"] + 601
    assert notify(settings, "group_failed", "later", "t", {}, now=later).status == "sent"
    assert hook.bodies[-1]["suppressed"] == 3


def test_a_clock_read_before_waiting_for_the_lock_is_still_within_the_window(tmp_path):
    """Two processes read the clock, the later reader takes the lock first: the earlier ``now`` is in its window.

    The cross-process test above failed about one run in five on this: ``now - last`` was a few
    milliseconds negative and a negative age was taken for "outside the window".
    """
    from contimg.notify import RateLimiter

    limiter = RateLimiter(tmp_path, window_s=600)
    assert limiter.take("group_failed", "second reader", now=1000.004).allowed
    assert not limiter.take("group_failed", "first reader", now=1000.001).allowed
    # a clock stepped back by more than a window is a new window
    assert limiter.take("group_failed", "after a clock step", now=1000.004 - 601).allowed


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_webhook_is_logged_masked_and_does_not_raise(tmp_path, clean_env, caplog):
    from contimg.notify import notify

    url = f"http://127.0.0.1:{_dead_port()}/hooks/{TOKEN}"
    settings = _settings(tmp_path, webhook_url=url, webhook_timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="contimg.notify"):
        out = notify(settings, "group_failed", "s", "t", {})
    assert out.status == "failed"
    assert "webhook" in caplog.text and "refused" in caplog.text.lower()
    assert TOKEN not in caplog.text
    # once per window: the next one within it is counted, not attempted
    assert notify(settings, "group_failed", "s2", "t", {}).status == "suppressed"


def test_a_hanging_webhook_costs_at_most_its_timeout(tmp_path, clean_env):
    from contimg.notify import notify

    slow = _Hook(delay_s=5)
    try:
        settings = _settings(tmp_path, webhook_url=slow.url, webhook_timeout_s=0.5)
        t0 = time.monotonic()
        out = notify(settings, "qa_failed", "s", "t", {})
        assert time.monotonic() - t0 < 2.5
        assert out.status == "failed"
    finally:
        slow.close()


def test_an_http_error_is_a_failure_with_its_status(tmp_path, clean_env, caplog):
    from contimg.notify import notify

    bad = _Hook(status=500)
    try:
        settings = _settings(tmp_path, webhook_url=bad.url)
        with caplog.at_level(logging.WARNING, logger="contimg.notify"):
            assert notify(settings, "qa_failed", "s", "t", {}).status == "failed"
        assert "500" in caplog.text and TOKEN not in caplog.text
    finally:
        bad.close()


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list]]:
    from aiosmtpd.controller import Controller

    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            received.append(envelope)
            return "250 OK"

    port = _dead_port()  # free now; aiosmtpd's start-up check cannot use port 0
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    # stop() cancels the start-up check's connection, which aiosmtpd logs on "mail.log" from its thread, at
    # times after pytest closed the captured stream ("--- Logging error --- ... CancelledError" in CI's log)
    mail_log = logging.getLogger("mail.log")
    level = mail_log.level
    mail_log.setLevel(logging.CRITICAL)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()
        mail_log.setLevel(level)


def test_mail_goes_to_every_recipient_through_smtp(tmp_path, clean_env, smtp_server):
    from email import message_from_bytes

    from contimg.notify import notify

    port, received = smtp_server
    settings = _settings(tmp_path, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                         smtp_from="contimg@dsa110.example", smtp_to=["ops@example.org", "pi@example.org"])
    out = notify(settings, "ese_candidate", "2 new ESE candidate(s)", "source 17: 6.1 sigma", {"n": 2})
    assert out.status == "sent"
    (envelope,) = received
    assert envelope.mail_from == "contimg@dsa110.example"
    assert sorted(envelope.rcpt_tos) == ["ops@example.org", "pi@example.org"]
    msg = message_from_bytes(envelope.content)
    assert "2 new ESE candidate(s)" in msg["Subject"] and "[contimg]" in msg["Subject"]
    assert "source 17: 6.1 sigma" in msg.get_payload()


def test_an_unreachable_smtp_server_is_logged_and_does_not_raise(tmp_path, clean_env, caplog):
    from contimg.notify import notify

    settings = _settings(tmp_path, smtp_host="127.0.0.1", smtp_port=_dead_port(), smtp_to=["ops@example.org"],
                         smtp_user="ops", smtp_password="smtp-s3cret", smtp_timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="contimg.notify"):
        assert notify(settings, "group_failed", "s", "t", {}).status == "failed"
    assert "smtp" in caplog.text.lower() and "smtp-s3cret" not in caplog.text


def test_the_webhook_token_and_smtp_password_are_settings_secrets(tmp_path, clean_env):
    from contimg.secrets import mask_text, settings_secrets

    url = f"https://hooks.example.org/services/{TOKEN}"
    settings = _settings(tmp_path, webhook_url=url, smtp_password="smtp-s3cret")
    secrets = settings_secrets(settings)
    assert "smtp-s3cret" in secrets
    masked = mask_text(f"posting to {url} failed; login smtp-s3cret", secrets)
    assert TOKEN not in masked and "smtp-s3cret" not in masked
    assert TOKEN not in repr(settings.notify) and "smtp-s3cret" not in repr(settings.notify)


def test_an_unwritable_state_directory_still_sends_and_does_not_raise(tmp_path, clean_env, hook, caplog):
    from contimg.notify import notify

    settings = _settings(tmp_path, webhook_url=hook.url)
    state = settings.paths.state
    state.rmdir() if not any(state.iterdir()) else None
    state.write_text("not a directory")  # the limiter's file cannot be created
    with caplog.at_level(logging.WARNING, logger="contimg.notify"):
        assert notify(settings, "group_failed", "a", "t", {}).status == "sent"
        assert notify(settings, "group_failed", "b", "t", {}).status == "suppressed"  # limited in this process
    assert "rate limit" in caplog.text


def test_an_empty_webhook_url_or_smtp_host_means_none(tmp_path, clean_env):
    clean_env.setenv("CONTIMG_NOTIFY__WEBHOOK_URL", "")
    clean_env.setenv("CONTIMG_NOTIFY__SMTP_HOST", " ")
    clean_env.setenv("CONTIMG_NOTIFY__SMTP_TO", '["ops@example.org"]')
    settings = _settings(tmp_path)
    assert settings.notify.webhook_url is None and settings.notify.smtp_host is None
    assert not settings.notify.enabled
