"""What ``contimg status`` shows: groups by state, the latest groups with stage timings, queue lengths.

:func:`collect_products` and :func:`format_products` list what a run made (Measurement Sets with
their calibration, calibration tables, images with QA, photometry counts); ``contimg demo`` prints them.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from contimg.config import Settings
from contimg.db import run_transaction
from contimg.db.models import CalibrationTable, Image, MeasurementSet, ObservationGroup, Photometry
from contimg.pipeline.stages import QUEUES, STAGES
from contimg.verdict import worst
from contimg.secrets import mask_text, mask_url, url_passwords

log = logging.getLogger(__name__)


def queue_lengths(broker_url: str, queues: tuple[str, ...] = QUEUES) -> dict[str, int | None]:
    """``LLEN`` of each queue's Redis list (None for every queue if Redis cannot be reached).

    The warning logged when Redis cannot be reached names the broker with its
    password masked (:func:`contimg.secrets.mask_url`), and the Redis error's
    text is masked too.
    """
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        pipe = client.pipeline()
        for q in queues:
            pipe.llen(q)
        return dict(zip(queues, (int(n) for n in pipe.execute())))
    except (redis.RedisError, ValueError) as exc:  # ValueError: a malformed URL
        log.warning("cannot read queue lengths from %s: %s", mask_url(broker_url),
                    mask_text(str(exc), url_passwords(broker_url)))
        return {q: None for q in queues}


def worker_presence(settings: Settings) -> list[dict[str, Any]] | None:
    """The workers present now (name, node, queues, free staging, groups held); None if Redis cannot be read."""
    import redis

    from contimg.cluster.nodes import PresenceRegistry, presence_summary

    try:
        return presence_summary(PresenceRegistry(settings.broker_url, ttl_s=settings.celery.presence_ttl_s).alive())
    except (redis.RedisError, ValueError):
        return None


def collect_status(settings: Settings, *, latest: int = 10) -> dict[str, Any]:
    """A JSON-serialisable snapshot of the pipeline's state.

    Besides the counts, groups and queue lengths, ``"broker"`` names the broker
    the queue lengths were read from, its password masked.
    """
    from contimg.db.groups import counts_by_state, latest_groups

    def _read(session) -> dict[str, Any]:
        return {
            "counts": counts_by_state(session),
            "groups": [group_summary(g) for g in latest_groups(session, limit=latest, with_products=True)],
        }

    out = run_transaction(settings, _read, readonly=True)
    out["queues"] = queue_lengths(settings.broker_url)
    out["nodes"] = worker_presence(settings)
    out["broker"] = mask_url(settings.broker_url)
    return out


def group_summary(g: ObservationGroup) -> dict[str, Any]:
    """One group as a dict: state, stage, subbands, timings of its latest attempt, products.

    A stage's ``timings[stage]["seconds"]`` is its work; ``"wait_seconds"`` the time it waited for a worker
    (None for rows recorded before waits were).
    """
    order = {name: i for i, name in enumerate(STAGES)}  # the registry's order, whatever the rows' order
    timings = {t.stage: {"seconds": t.seconds, "wait_seconds": t.wait_seconds, "status": t.status,
                         "host": t.hostname,
                         "queued": t.queued_at.isoformat() if t.queued_at else None,
                         "started": t.started_at.isoformat() if t.started_at else None,
                         "finished": t.finished_at.isoformat() if t.finished_at else None}
               for t in sorted(g.stage_timings, key=lambda t: order.get(t.stage, len(order)))
               if t.attempt == g.attempt}
    return {
        "group_key": g.group_key,
        "state": g.state.value,
        "stage": g.current_stage,
        "n_subbands": g.nsubbands,
        "attempt": g.attempt,
        "worker": g.worker,
        "node": g.node,
        "n_retries": g.retry_count,
        "error": g.error_message,
        "timings": timings,
        "ms_path": g.measurement_sets[-1].path if g.measurement_sets else None,
        "ms_paths": [m.path for m in g.measurement_sets],
        "qa": worst(i.qa_verdict for m in g.measurement_sets for i in m.images),
        "started": g.started_at.isoformat() if g.started_at else None,
        "finished": g.finished_at.isoformat() if g.finished_at else None,
    }


def format_timing(stage: str, timing: dict[str, Any]) -> str:
    """One stage's timing as text: ``convert 3.5 s (waited 160 s)``; a running stage shows its status."""
    if timing.get("seconds") is None:
        return f"{stage} {timing.get('status')}"
    text = f"{stage} {timing['seconds']:.1f} s"
    wait = timing.get("wait_seconds")
    if wait is not None and wait >= 0.05:
        text += f" (waited {wait:.0f} s)" if wait >= 10 else f" (waited {wait:.1f} s)"
    return text


def format_status(status: dict[str, Any]) -> str:
    """The status as text for operators."""
    lines = ["groups: " + ", ".join(f"{k} {v}" for k, v in status["counts"].items())]
    q = status["queues"]
    unreachable = f" (broker {mask_url(status['broker'])} unreachable)" \
        if status.get("broker") and q and all(v is None for v in q.values()) else ""
    lines.append("queues: " + ", ".join(f"{k} {'?' if v is None else v}" for k, v in q.items()) + unreachable)
    nodes = status.get("nodes")
    if nodes is not None:
        lines.append(f"workers: {len(nodes)} present" + (":" if nodes else ""))
        for n in nodes:
            free = n.get("staging_free_bytes")
            where = f"node {n['node']}, staging {free / 1e9:.1f} GB free" if n.get("node") and free is not None \
                else "no staging"
            held = ", ".join(n.get("active") or []) or "idle"
            lines.append(f"  {n['hostname']:<28} {where}; queues {','.join(n.get('queues') or [])}; {held}")
    if status["groups"]:
        lines.append("")
        lines.append(f"{'group':<21}{'state':<13}{'stage':<11}{'sb':>3}  {'qa':<5} timings")
    for g in status["groups"]:
        t = ", ".join(format_timing(s, v) for s, v in g["timings"].items())
        lines.append(f"{g['group_key']:<21}{g['state']:<13}{(g['stage'] or '-'):<11}{g['n_subbands']:>3}  "
                     f"{(g.get('qa') or '-'):<5} {t or '-'}")
        if g.get("node") or g.get("worker"):
            lines.append(f"{'':<21}held by {g.get('worker') or '-'}"
                         + (f" on node {g['node']}" if g.get("node") else ""))
        if g["error"]:
            lines.append(f"{'':<21}error: {g['error'][:200]}")
    return "\n".join(lines)


def collect_products(settings: Settings, *, group_keys: list[str] | None = None) -> dict[str, Any]:
    """The products in the database (of ``group_keys`` only, if given), JSON-serialisable.

    Returns
    -------
    dict
        ``{"measurement_sets": [...], "caltables": [...], "images": [...], "photometry": {...}}``;
        each MS names its group, stage and calibration set; each image its rms, peak and beam;
        photometry counts rows per image and in total.
    """

    def _read(session) -> dict[str, Any]:
        stmt = select(MeasurementSet, ObservationGroup.group_key).join(ObservationGroup, isouter=True)
        if group_keys is not None:
            stmt = stmt.where(ObservationGroup.group_key.in_(group_keys))
        ms_rows = session.execute(stmt.options(selectinload(MeasurementSet.calibration_set))
                                  .order_by(MeasurementSet.start_mjd)).all()
        ms_ids = [m.id for m, _ in ms_rows]
        mss = [{"group_key": key, "ms_path": m.path, "stage": m.stage, "calibrator": m.calibrator_name,
                "calibration_set": m.calibration_set.name if m.calibration_set else None} for m, key in ms_rows]
        tables = session.scalars(select(CalibrationTable).where(CalibrationTable.source_ms_id.in_(ms_ids))
                                 .order_by(CalibrationTable.id)).all()
        cal = [{"type": t.table_type.value if hasattr(t.table_type, "value") else str(t.table_type),
                "qa_verdict": t.calibration_set.qa_verdict if t.calibration_set is not None else None,
                "path": t.path, "calibrator": t.calibrator_name, "flagged_fraction": t.flagged_fraction,
                "n_solutions": t.n_solutions, "n_expected": t.n_expected} for t in tables]
        images = session.scalars(select(Image).where(Image.ms_id.in_(ms_ids)).order_by(Image.mid_mjd, Image.id)).all()
        counts = dict(session.execute(select(Photometry.image_id, func.count()).where(
            Photometry.image_id.in_([i.id for i in images])).group_by(Photometry.image_id)).all())
        imgs = [{"id": i.id, "path": i.path, "pb_corrected": i.pb_corrected, "qa_verdict": i.qa_verdict,
                 "qa_reasons": (i.qa or {}).get("reasons", []), "rms_jy": i.rms_jy, "peak_jy": i.peak_jy,
                 "beam_arcsec": [i.beam_major_arcsec, i.beam_minor_arcsec, i.beam_pa_deg],
                 "photometry_rows": int(counts.get(i.id, 0))} for i in images]
        return {"measurement_sets": mss, "caltables": cal, "images": imgs,
                "photometry": {"rows": int(sum(counts.values())), "images_measured": len(counts)}}

    return run_transaction(settings, _read, readonly=True)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_products(products: dict[str, Any]) -> str:
    """The products as text for operators."""
    mss, cal, imgs = products["measurement_sets"], products["caltables"], products["images"]
    lines = [f"measurement sets ({len(mss)}):"]
    lines += [f"  {m['ms_path']}  [{m['stage']}; calibration {m['calibration_set'] or '-'}"
              f"{'; calibrator ' + m['calibrator'] if m['calibrator'] else ''}]" for m in mss]
    lines.append(f"calibration tables ({len(cal)}):")
    lines += [f"  {t['type']:<2}{t['path']}  [QA {t.get('qa_verdict') or '-'}, "
              f"{_num(t['n_solutions'], 'd')}/{_num(t['n_expected'], 'd')} solutions, "
              f"{_num(t['flagged_fraction'], '.1%')} flagged]" for t in cal]
    lines.append(f"images ({len(imgs)}):")
    lines += [f"  {i['path']}  [QA {i.get('qa_verdict') or '-'}, rms {_num(i['rms_jy'] and i['rms_jy'] * 1e3, '.2f')} mJy/beam, "
              f"peak {_num(i['peak_jy'], '.3f')} Jy/beam, beam {_num(i['beam_arcsec'][0], '.1f')}x"
              f"{_num(i['beam_arcsec'][1], '.1f')} arcsec"
              f"{', ' + str(i['photometry_rows']) + ' photometry rows' if i['photometry_rows'] else ''}]" for i in imgs]
    p = products["photometry"]
    lines.append(f"photometry: {p['rows']} row(s) from {p['images_measured']} image(s)")
    return "\n".join(lines)
