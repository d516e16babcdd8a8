"""The pipeline's notifications: where a group fails, a product fails QA or new ESE candidates appear.

Each function here turns an event of the pipeline into one :func:`contimg.notify.notify` call (the
webhook/e-mail channels, the events chosen and the rate limit are ``settings.notify``'s). None of
them raises: a notification that cannot be sent is logged and the stage goes on.

* :func:`fail_group` -- the one way a run fails its group (Celery tasks, the serial path): the
  group store records it (:func:`contimg.db.groups.fail`) and, if that changed its state, a
  ``group_failed`` message goes out;
* :func:`groups_failed` -- groups the group store failed by itself (too few subbands when their
  collection ended, a lost run out of retries);
* :func:`qa_failed` -- a calibration set, image or photometry normalisation failed its QA gate
  (``qa_failed``); the group usually fails too, so both kinds may arrive;
* :func:`candidates_found` -- the nightly scoring created new ESE candidates (one message per run);
* :func:`new_sources_found` -- an image's new-source search created candidates (one message per image).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from contimg.config import Settings
from contimg.db import groups

log = logging.getLogger(__name__)

__all__ = ["candidates_found", "fail_group", "groups_failed", "new_sources_found", "qa_failed"]


def _send(settings: Settings, kind: str, subject: str, text: str, data: Mapping[str, Any]) -> None:
    from contimg.notify import notify

    notify(settings, kind, subject, text, data)


def fail_group(settings: Settings, group_key: str, reason: str, *, token: str | None = None) -> bool:
    """Mark the group failed (:func:`contimg.db.groups.fail`) and notify ``group_failed`` if its state changed.

    Parameters
    ----------
    settings
        The settings (database, ``notify``).
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    reason
        Why it failed (stored as its error message and sent).
    token
        Fail only if this run is still the group's current one (see :func:`contimg.db.groups.fail`).

    Returns
    -------
    bool
        True if the group was failed by this call (and a notification attempted).
    """
    changed = groups.fail(settings, group_key, reason, token=token)
    if changed:
        groups_failed(settings, {group_key: reason})
    return changed


def groups_failed(settings: Settings, failed: Mapping[str, str]) -> None:
    """Notify ``group_failed`` for each group the group store has just failed.

    Parameters
    ----------
    settings
        The settings (``notify``).
    failed
        Group key → reason.
    """
    for key, reason in failed.items():
        _send(settings, "group_failed", f"group {key} failed", f"Group {key} failed:\n{reason}",
              {"group_key": key, "error": reason})


def qa_failed(settings: Settings, *, product: str, name: str, reasons: Sequence[str],
              data: Mapping[str, Any] | None = None) -> None:
    """Notify ``qa_failed``: a product failed its QA gate and feeds no science.

    Parameters
    ----------
    settings
        The settings (``notify``).
    product
        ``calibration``, ``image`` or ``photometry``.
    name
        What failed: the MS, image or calibration set path or name.
    reasons
        The gate's reasons.
    data
        Details for the webhook's ``data`` (group key, ids, figures ...).
    """
    text = f"The {product} QA gate failed {name}:\n" + "\n".join(f"- {r}" for r in reasons)
    _send(settings, "qa_failed", f"{product} QA failed: {name}", text,
          {"product": product, "name": name, "reasons": list(reasons), **dict(data or {})})


def candidates_found(settings: Settings, candidates: Sequence[Mapping[str, Any]]) -> None:
    """Notify ``ese_candidate`` once for the new ESE candidates of a scoring run (nothing if there are none).

    Parameters
    ----------
    settings
        The settings (``notify``).
    candidates
        Each new candidate: ``candidate_id``, ``source_id``, ``source_name``, ``ra_deg``, ``dec_deg``,
        ``significance``, ``score``, ``detected_mjd``.
    """
    if not candidates:
        return
    best = sorted(candidates, key=lambda c: -float(c.get("significance") or 0.0))
    lines = [f"- {c.get('source_name') or c['source_id']} (candidate {c['candidate_id']}): "
             f"{float(c.get('significance') or 0.0):.1f} sigma, detected MJD {float(c.get('detected_mjd') or 0.0):.3f}"
             for c in best[:50]]
    if len(best) > 50:
        lines.append(f"- ... and {len(best) - 50} more")
    _send(settings, "ese_candidate", f"{len(best)} new ESE candidate(s)",
          "The nightly scoring found new ESE candidates:\n" + "\n".join(lines),
          {"candidates": [dict(c) for c in best]})


def new_sources_found(settings: Settings, image: str, candidates: Sequence[Mapping[str, Any]]) -> None:
    """Notify ``new_source`` once for the new-source candidates one image's search created (nothing if none).

    Parameters
    ----------
    settings
        The settings (``notify``).
    image
        The image searched (path).
    candidates
        Each new candidate: ``id``, ``name``, ``ra_deg``, ``dec_deg``, ``peak_flux_jy``, ``snr``,
        ``significance``, ``n_prior_epochs``.
    """
    if not candidates:
        return
    lines = [f"- {c['name']} (candidate {c['id']}): {1e3 * float(c['peak_flux_jy']):.2f} mJy, SNR "
             f"{float(c['snr']):.1f}, {float(c['significance']):.1f} sigma above {c['n_prior_epochs']} earlier epoch(s)"
             for c in candidates]
    _send(settings, "new_source", f"{len(candidates)} new-source candidate(s) in {image}",
          f"The new-source search of {image} found:\n" + "\n".join(lines),
          {"image": image, "candidates": [dict(c) for c in candidates]})
