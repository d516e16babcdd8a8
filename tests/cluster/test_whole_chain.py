"""A small night through the whole chain on real workers: convert → calibrate → image → photometry.

The science group arrives first: its calibration waits (retrying) until the
calibrator group, delivered later, is solved, then applies that group's set.
Everything is checked in the database and on disk: states, stage timings,
calibration tables with their solution counts, the MS's calibration set,
images with QA, photometry rows, and the calibrator's flux in the image
and in the photometry against the simulator's truth.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cluster_helpers import CLUSTER_ENV, drop_group, dump_logs, finished, groups, timestamp, wait_for
from contimg.cluster import EmbeddedCluster
from contimg.db import session_scope
from contimg.db.models import CalibrationSet, CalibrationTable, Component, Image, MeasurementSet, Photometry, Source

pytestmark = pytest.mark.integration

CHAIN = [("convert", "ok"), ("calibrate", "ok"), ("image", "ok"), ("photometry", "ok")]


@pytest.fixture(scope="module")
def chain_cluster(tmp_path_factory, sim_night):
    from contimg.cluster.demo import import_catalogue

    root = tmp_path_factory.mktemp("chain")
    env = {**CLUSTER_ENV, "CONTIMG_STAGING_DIR": str(root / "staging"),
           "CONTIMG_CALIBRATION__WAIT_FOR_SOLUTION_S": "300",
           # only the group holding the transit is a calibrator group; the next one (response ~0.9) is science
           "CONTIMG_CALIBRATION__MIN_BEAM_RESPONSE": "0.95",
           "CONTIMG_IMAGING__THREADS": "1"}
    c = EmbeddedCluster(root, env=env).start()
    try:
        import_catalogue(c.settings(), sim_night.truth_path)
        c.start_worker(concurrency=2)
        c.start_producer()
        yield c
    finally:
        c.stop()


def _stages(g) -> list[tuple[str, str]]:
    return [(t.stage, t.status) for t in sorted(g.stage_timings, key=lambda t: t.started_at)]


def test_a_night_through_the_whole_chain(chain_cluster, sim_night):
    settings = chain_cluster.settings()
    incoming = settings.paths.incoming
    calibrator_paths, science_paths = (list(g.paths) for g in sim_night.groups)
    science = drop_group(incoming, science_paths, timestamp(30, 5))
    try:
        wait_for(lambda: ("calibrate", "running") in _stages(groups(settings)[science])
                 if science in groups(settings) else False, timeout_s=240, what="the science group to wait")
        calibrator = drop_group(incoming, calibrator_paths, timestamp(30, 0))
        got = wait_for(lambda: finished(settings, [science, calibrator]), timeout_s=600, what="the night")
    except BaseException:
        print(dump_logs(chain_cluster))
        raise
    for key in (science, calibrator):
        g = got[key]
        assert g.state.value == "completed", g.error_message
        assert _stages(g) == CHAIN and all(t.seconds > 0 for t in g.stage_timings)
        assert g.attempt == 1 and g.current_stage is None
    worker_log = next(p for p in chain_cluster.processes if p.name == "worker").log_text()
    assert f"group {science}: no valid calibration set yet" in worker_log
    cal_timing = {t.stage: t for t in got[science].stage_timings}["calibrate"]
    solved_at = {t.stage: t for t in got[calibrator].stage_timings}["calibrate"].finished_at
    assert cal_timing.started_at < solved_at <= cal_timing.finished_at  # it waited for the solution

    with session_scope(settings, readonly=True) as s:
        ms = {m.group.group_key: m for m in s.scalars(select(MeasurementSet))}
        cal_ms, sci_ms = ms[calibrator], ms[science]
        # the calibrator group solved a set of its own; the science group applied it
        calset = s.get(CalibrationSet, cal_ms.calibration_set_id)
        assert calset.name == Path(cal_ms.path).name.removesuffix(".ms")
        assert cal_ms.calibrator_name == calset.calibrator_name == "SIM-000020"
        assert sci_ms.calibration_set_id == calset.id and sci_ms.calibrator_name is None
        assert cal_ms.stage == sci_ms.stage == "imaged"
        tables = s.scalars(select(CalibrationTable).where(CalibrationTable.calibration_set_id == calset.id)
                           .order_by(CalibrationTable.apply_order)).all()
        assert [t.table_type.value for t in tables] == ["B", "G"]
        for t in tables:
            assert Path(t.path, "table.dat").exists() and t.source_ms_id == cal_ms.id
            assert t.n_solutions > 0 and t.n_expected >= t.n_solutions
            assert t.flagged_fraction <= settings.calibration.max_flagged_fraction
            assert t.valid_start_mjd <= sci_ms.start_mjd and sci_ms.end_mjd <= t.valid_end_mjd
        # two images per MS (flat noise and PB-corrected), on disk, with QA
        for m in (cal_ms, sci_ms):
            images = sorted(m.images, key=lambda i: i.pb_corrected)
            assert [i.pb_corrected for i in images] == [False, True]
            for i in images:
                assert Path(i.path).exists() and i.tier == "standard" and i.backend == "wsclean"
                assert 0 < i.rms_jy < 0.1 and i.dynamic_range > 10
                assert i.beam_major_arcsec >= i.beam_minor_arcsec > 0
                assert abs(i.mid_mjd - (m.start_mjd + m.end_mjd) / 2) < 1e-3
            # the blind finder ran in the worker (a daemonic process) and its components were stored
            assert not any("blind source finding failed" in r for r in (images[1].qa or {}).get("reasons", [])), \
                images[1].qa
            assert s.scalars(select(Component).where(Component.image_id == images[1].id)).first() is not None
        # science: the calibrator's flux is recovered from the calibrated data (10 Jy at 1.4 GHz, alpha -0.7,
        # near the beam centre at transit; a peak pixel reads 1-3 % low, the beam's time average a few % more)
        cal_image = next(i for i in cal_ms.images if not i.pb_corrected)
        assert 8.5 < cal_image.peak_jy < 10.5, cal_image.peak_jy
        # photometry: attached to the PB-corrected image of each group, the calibrator measured in both
        for m in (cal_ms, sci_ms):
            pbcor = next(i for i in m.images if i.pb_corrected)
            rows = s.scalars(select(Photometry).where(Photometry.image_id == pbcor.id)).all()
            assert rows and all(r.flux_err_jy > 0 for r in rows)
            assert not s.scalars(select(Photometry).join(Image).where(Image.ms_id == m.id,
                                                                      Image.pb_corrected.is_(False))).all()
        truth = 10.0 * (1.405 / 1.4) ** -0.7  # the simulated calibrator at the images' mean frequency
        cal_rows = s.scalars(select(Photometry).join(Source).where(Source.name == "SIM-000020")).all()
        assert len(cal_rows) == 2
        for r in cal_rows:
            assert not r.upper_limit and abs(r.flux_jy / truth - 1) < 0.05, r.flux_jy  # demo: -1.3 %, -0.5 %


def test_an_image_is_redone_with_another_tier(chain_cluster):
    """The operator's answer to a failed image: reprocess from the image stage with another tier. The run
    images with that tier, measures again, and the tier stays on the group; an unknown tier is refused."""
    from contimg.api import reprocess
    from contimg.errors import ConfigError

    settings = chain_cluster.settings()
    done = [k for k, g in groups(settings).items() if g.state.value == "completed"]
    if not done:
        pytest.skip("needs the night of test_a_night_through_the_whole_chain")
    key = sorted(done)[0]
    (handle,) = reprocess(key, from_stage="image", tier="quicklook", settings=settings)
    assert handle.wait(timeout=300) == "completed", groups(settings)[key].error_message
    g = groups(settings)[key]
    assert g.imaging_tier == "quicklook"
    assert [(t.stage, t.status) for t in g.stage_timings if t.attempt == g.attempt] == CHAIN[2:]
    with session_scope(settings, readonly=True) as s:
        (ms,) = s.scalars(select(MeasurementSet).where(MeasurementSet.group_id == g.id)).all()
        assert {i.tier for i in ms.images} == {"quicklook"}
        pbcor = next(i for i in ms.images if i.pb_corrected)
        assert s.scalars(select(Photometry).where(Photometry.image_id == pbcor.id)).first() is not None
    with pytest.raises(ConfigError, match="unknown imaging tier 'fast'"):
        reprocess(key, from_stage="image", tier="fast", settings=settings)


def test_science_group_fails_after_waiting_for_a_solution(make_cluster, sim_groups):
    """No calibrator and no valid set: the group waits ``wait_for_solution_s``, then fails naming why."""
    cluster = make_cluster("no-solution", CONTIMG_CELERY__LAST_STAGE="calibrate",
                           CONTIMG_CALIBRATION__WAIT_FOR_SOLUTION_S="4")
    cluster.start_worker(concurrency=2)
    cluster.start_producer()
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(31, 0))
    try:
        got = wait_for(lambda: finished(settings, [key]), timeout_s=240, what=f"group {key}")
    except BaseException:
        print(dump_logs(cluster))
        raise
    g = got[key]
    assert g.state.value == "failed"
    assert "calibrate.run: NoValidCalibration" in g.error_message
    assert "still no valid calibration set after waiting" in g.error_message
    assert "wait_for_solution_s = 4" in g.error_message
    assert _stages(g) == [("convert", "ok"), ("calibrate", "failed")]
    timing = {t.stage: t for t in g.stage_timings}["calibrate"]
    assert timing.seconds + timing.wait_seconds >= 4  # deferred for a calibration set: wait, not work
    assert timing.wait_seconds > 0 and timing.paused_at is None
    with session_scope(settings, readonly=True) as s:
        assert not s.scalars(select(Image)).all()
