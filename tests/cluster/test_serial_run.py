"""``contimg run``: a small night through the stage registry in one process, without Redis or Celery.

The science group comes first in time: its calibration finds no set yet and is deferred until the
calibrator's group (later in the directory) has solved one, then applies it. A truncated file is
left out with its reason, a group with too few subbands fails with its reason, and the others go on.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from cluster_helpers import drop_group, timestamp
from contimg.db import session_scope
from contimg.db.models import CalibrationSet, Image, MeasurementSet, ObservationGroup, Photometry, Source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def serial_night(tmp_path_factory, sim_night):
    from contimg.cluster.demo import import_catalogue
    from contimg.config import load_settings
    from contimg.db import init_db

    root = tmp_path_factory.mktemp("serial")
    settings = load_settings(data_root=root, staging_dir=root / "staging",
                             ingest={"min_subbands": 12},
                             calibration={"min_beam_response": 0.95},
                             imaging={"threads": 1})
    settings.paths.ensure()
    init_db(settings)
    import_catalogue(settings, sim_night.truth_path)
    night = root / "night"
    night.mkdir()
    calibrator_paths, science_paths = (list(g.paths) for g in sim_night.groups)
    science = drop_group(night, science_paths, timestamp(30, 0), corrupt=3)  # sb03 truncated
    calibrator = drop_group(night, calibrator_paths, timestamp(30, 5))
    short = drop_group(night, science_paths, timestamp(30, 20), subbands=set(range(8)))  # 8 of 16 subbands
    return settings, night, {"science": science, "calibrator": calibrator, "short": short}


def test_a_night_runs_serially_through_the_registry(serial_night):
    from contimg.pipeline.serial import run_serial

    settings, night, keys = serial_night

    seen: list[tuple[str, str]] = []
    report = run_serial(settings, [night], progress=lambda k, s: seen.append((k, s)))
    by_key = {g.group_key: g for g in report.groups}
    truncated = [p for p in report.ignored if "_sb03" in p]
    assert len(truncated) == 1 and report.ignored[truncated[0]]  # named, with its reason
    # the science group (15 subbands) was deferred once, then applied the calibrator's set
    assert by_key[keys["science"]].state == "completed", by_key[keys["science"]].error
    assert by_key[keys["science"]].deferred == 1
    assert by_key[keys["calibrator"]].state == "completed", by_key[keys["calibrator"]].error
    assert by_key[keys["short"]].state == "failed"
    assert "only 8 of 16 subbands" in by_key[keys["short"]].error
    assert list(by_key[keys["calibrator"]].stages) == ["convert", "calibrate", "image", "photometry"]
    assert (keys["science"], "convert") in seen and seen.count((keys["science"], "calibrate")) == 2
    with session_scope(settings, readonly=True) as s:
        rows = {g.group_key: g for g in s.scalars(select(ObservationGroup))}
        assert rows[keys["science"]].state.value == rows[keys["calibrator"]].state.value == "completed"
        assert rows[keys["short"]].state.value == "failed" and "only 8 of 16" in rows[keys["short"]].error_message
        ms = {m.group.group_key: m for m in s.scalars(select(MeasurementSet))}
        calset = s.get(CalibrationSet, ms[keys["calibrator"]].calibration_set_id)
        assert ms[keys["science"]].calibration_set_id == calset.id
        assert [t.stage for t in sorted(rows[keys["science"]].stage_timings, key=lambda t: t.started_at)] == [
            "convert", "calibrate", "image", "photometry"]
        for m in ms.values():
            pbcor = next(i for i in m.images if i.pb_corrected)
            assert s.scalars(select(Photometry).where(Photometry.image_id == pbcor.id)).first() is not None
        truth = 10.0 * (1.405 / 1.4) ** -0.7
        cal_rows = s.scalars(select(Photometry).join(Source).join(Image)
                             .where(Source.name == "SIM-000020", Image.pb_corrected.is_(True))).all()
        assert len(cal_rows) == 2
        assert all(abs(r.flux_jy / truth - 1) < 0.05 for r in cal_rows), [r.flux_jy for r in cal_rows]


def test_the_cli_runs_and_skips_what_is_done(serial_night, capsys):
    """A second ``contimg run`` of the same directory registers nothing new and reprocesses nothing."""
    from contimg.cli import build_parser
    from contimg.cli import run as run_command
    from contimg.errors import InputFileError

    settings, night, _ = serial_night
    code = run_command.run(build_parser().parse_args(["run", str(night), "--json"]), settings)
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_registered"] == 0 and doc["groups"] == [] and code == 0
    with pytest.raises(InputFileError, match="missing: no such file"):
        run_command.run(build_parser().parse_args(["run", str(night / "missing")]), settings)


def test_photometry_of_a_recorded_ms(serial_night, capsys):
    """``contimg photometry MS`` measures the PB-corrected image recorded for that MS, as the stage did."""
    from contimg.cli import build_parser
    from contimg.cli import photometry as photometry_command
    from contimg.errors import NotFoundError
    from contimg.pipeline.photometry import images_of_ms

    settings, night, keys = serial_night
    with session_scope(settings, readonly=True) as s:
        ms = {m.group.group_key: m.path for m in s.scalars(select(MeasurementSet))}
    assert photometry_command.run(build_parser().parse_args(["photometry", ms[keys["calibrator"]], "--json"]),
                                  settings) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_measured"] >= 1 and result["qa_verdict"] in ("pass", "warn")
    with pytest.raises(NotFoundError, match="not a Measurement Set recorded"):
        images_of_ms(settings, night)
