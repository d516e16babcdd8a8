"""Fixtures of the web tests: a small real night in a database, a web server, a headless Chromium.

``small_night`` runs a small simulated night (a 10 Jy calibrator group and a
science group, 16 core antennas, 4 channels per subband) through the real
stages serially (:func:`contimg.pipeline.serial.run_serial`: conversion,
CASA calibration, WSClean imaging, photometry) into a fresh SQLite database,
then adds an ESE candidate for one source with the library's own function
(a candidate needs months of epochs). ``web_server`` serves it with
``contimg web`` in a subprocess, its broker a private redis-server, so an
accepted reprocess really publishes. ``browser`` is Debian's chromium driven
by chromium-driver through Selenium; screenshots go to ``test-artifacts/web/``
(``CONTIMG_TEST_ARTIFACTS`` to change).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ("operator", "op-pass-7f3a9c")
VIEWER = ("viewer", "view-pass-51be")


def artifacts_dir() -> Path:
    path = Path(os.environ.get("CONTIMG_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def small_night(tmp_path_factory):
    """A data root and settings whose database holds a small night processed by the real stages."""
    import numpy as np

    from contimg.cluster.demo import import_catalogue
    from contimg.config import load_settings
    from contimg.db import init_db, session_scope
    from contimg.db.models import Source
    from contimg.db.science import upsert_ese_candidate
    from contimg.pipeline.serial import run_serial
    from contimg.simulation import SimulationConfig, simulate
    from sqlalchemy import select

    root = tmp_path_factory.mktemp("web_night")
    core = tuple(int(a) for a in np.round(np.linspace(0, 101, 16)))
    sim = simulate(root / "sim", SimulationConfig(antenna_numbers=core, channels_per_subband=4, n_groups=2, seed=3,
                                                  n_sources=20, calibrator_flux_jy=10.0))
    settings = load_settings(data_root=root / "data", staging_dir=root / "staging",
                             calibration={"min_beam_response": 0.95}, imaging={"threads": 2},
                             broker_url="redis://127.0.0.1:1/0")
    settings.paths.ensure()
    init_db(settings)
    import_catalogue(settings, sim.truth_path)
    report = run_serial(settings, sorted({p.parent for g in sim.groups for p in g.paths}))
    assert all(g.state == "completed" for g in report.groups), [(g.group_key, g.error) for g in report.groups]
    with session_scope(settings) as session:
        src = session.scalars(select(Source).where(Source.is_calibrator.is_(False)).order_by(Source.flux_jy.desc())
                              ).first()
        cand, _ = upsert_ese_candidate(session, source_id=src.id, score=12.0, significance=6.5, detected_mjd=60827.4,
                                       template={"t_center_mjd": 60827.0, "duration_days": 40.0, "depth": 0.3})
        ids = {"source_id": src.id, "candidate_id": cand.id}
    return {"settings": settings, "root": root, "keys": [g.group_key for g in report.groups], **ids}


@pytest.fixture(scope="session")
def web_server(small_night, tmp_path_factory):
    """``contimg web`` on a free port over ``small_night``, publishing to a private redis-server."""
    from contimg.cluster.redis_server import RedisServer, free_port

    redis = RedisServer(tmp_path_factory.mktemp("web_redis")).start()
    port = free_port()
    settings = small_night["settings"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTIMG_")}
    env.update(CONTIMG_DATA_ROOT=str(settings.data_root), CONTIMG_STAGING_DIR=str(settings.staging_dir),
               CONTIMG_BROKER_URL=redis.url, CONTIMG_WEB__OPERATOR_PASSWORD=OPERATOR[1],
               CONTIMG_WEB__VIEWER_PASSWORD=VIEWER[1], CONTIMG_CALIBRATION__MIN_BEAM_RESPONSE="0.95")
    log_path = small_night["root"] / "web.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "contimg", "web", "--port", str(port)], env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                redis.stop()
                pytest.fail(f"contimg web did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
    yield {"url": url, "redis": redis, "log": log_path, **small_night}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    redis.stop()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's chromium and chromium-driver) through Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if chromium is None or not Path(driver_path).exists():
        pytest.fail("chromium and chromium-driver are needed for the browser tests (make setup installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
