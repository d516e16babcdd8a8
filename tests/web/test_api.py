"""The web's JSON API and its rules (logins, roles, paging, filters, files), in process with FastAPI's TestClient.

The database is real (SQLite and PostgreSQL); its rows are written with the ORM as the stages write them; the
publisher of reprocessing runs is a recorder (the browser tests publish to a real Redis).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

OPERATOR_PW = "op-secret-91d2"
VIEWER_PW = "viewer-secret-55a0"
T0 = datetime(2025, 6, 1, 10, 0, 0, tzinfo=timezone.utc)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


OPERATOR = _basic("operator", OPERATOR_PW)
VIEWER = _basic("viewer", VIEWER_PW)


def _populate(settings) -> dict:
    """Three groups (two completed with images, one failed), a source with a light curve and a candidate."""
    from contimg.db import session_scope
    from contimg.db.models import (Component, EseCandidate, GroupState, Image, MeasurementSet, NewSource,
                                   NewSourceDetection, ObservationGroup, Photometry, Source, StageTiming,
                                   VariabilityStats)

    out: dict = {}
    with session_scope(settings) as s:
        src = Source(name="SRC-1", ra_deg=150.0, dec_deg=35.0, flux_jy=0.5, spectral_index=-0.7)
        other = Source(name="SRC-2", ra_deg=151.0, dec_deg=35.5, flux_jy=0.05)
        s.add_all([src, other])
        s.flush()
        out["source"] = src.id
        images = []
        for n, (state, verdict) in enumerate([(GroupState.COMPLETED, "pass"), (GroupState.COMPLETED, "fail"),
                                              (GroupState.FAILED, None)]):
            ts = T0 + timedelta(seconds=309 * n)
            g = ObservationGroup(group_key=ts.strftime("%Y-%m-%dT%H:%M:%S"), timestamp=ts, state=state, nsubbands=16,
                                 attempt=1, error_message="only 8 of 16 subbands" if verdict is None else None)
            s.add(g)
            s.flush()
            s.add(StageTiming(group_id=g.id, stage="convert", attempt=1, started_at=ts, finished_at=ts,
                              seconds=3.5, status="done"))
            if verdict is None:
                continue
            ms = MeasurementSet(group_id=g.id, path=str(settings.data_root / f"ms/{n}.ms"), start_mjd=60827.4 + n,
                                end_mjd=60827.5 + n)
            s.add(ms)
            s.flush()
            for pb in (False, True):
                img = Image(path=str(settings.data_root / f"images/{n}{'.pbcor' if pb else ''}.fits"), ms_id=ms.id,
                            mid_mjd=60827.41 + n * 0.0036, rms_jy=3e-4, peak_jy=0.5, pb_corrected=pb,
                            qa_verdict=verdict, qa={"reasons": [] if verdict == "pass" else ["rms 12x the thermal"]},
                            files={"thumbnail": str(settings.data_root / f"images/{n}.png")})
                s.add(img)
                s.flush()
                images.append(img)
            s.add(Photometry(source_id=src.id, image_id=images[-1].id, epoch_mjd=images[-1].mid_mjd, flux_jy=0.49,
                             flux_err_jy=0.002, upper_limit=False))
        s.add(VariabilityStats(source_id=src.id, n_epochs=2, weighted_mean_jy=0.49, chi2_nu=1.1,
                               modulation_index=0.01, ese_significance=6.0))
        cand = EseCandidate(source_id=src.id, first_detected_mjd=60827.4, last_detected_mjd=60827.41, score=10.0,
                            significance=6.0)
        s.add(cand)
        s.flush()
        out["candidate"] = cand.id
        comp = Component(image_id=images[-1].id, ra_deg=150.3, dec_deg=35.2, peak_flux_jy=0.004, flags=0)
        s.add(comp)
        s.flush()
        ns = NewSource(name="CTG J100112.0+351200", ra_deg=150.3, dec_deg=35.2, first_detected_mjd=60827.41,
                       last_detected_mjd=60827.41, n_detections=1, peak_flux_jy=0.004, snr=13.3, significance=11.0,
                       n_prior_epochs=4, prior_limit_jy=0.0015, cutouts=str(settings.data_root / "images/ns.png"))
        s.add(ns)
        s.flush()
        s.add(NewSourceDetection(new_source_id=ns.id, component_id=comp.id, image_id=images[-1].id,
                                 epoch_mjd=60827.41, ra_deg=150.3, dec_deg=35.2, flux_jy=0.004, snr=13.3,
                                 significance=11.0))
        out["new_source"] = ns.id
        out["keys"] = [T0.strftime("%Y-%m-%dT%H:%M:%S"), (T0 + timedelta(seconds=309)).strftime("%Y-%m-%dT%H:%M:%S"),
                       (T0 + timedelta(seconds=618)).strftime("%Y-%m-%dT%H:%M:%S")]
    return out


@pytest.fixture
def web(db_settings):
    from fastapi.testclient import TestClient

    from contimg.web.app import create_app

    settings = db_settings.model_copy(update={"web": db_settings.web.model_copy(update={
        "operator_password": __import__("pydantic").SecretStr(OPERATOR_PW),
        "viewer_password": __import__("pydantic").SecretStr(VIEWER_PW)})})
    rows = _populate(settings)
    published: list[tuple] = []
    client = TestClient(create_app(settings, enqueue=lambda *a, **k: published.append((a, k))))
    return {"client": client, "settings": settings, "published": published, **rows}


def test_groups_by_state_and_qa_paged(web):
    c = web["client"]
    res = c.get("/api/groups").json()
    assert res["total"] == 3 and [g["group_key"] for g in res["items"]] == web["keys"][::-1]  # newest first
    assert res["items"][-1]["timings"]["convert"]["seconds"] == 3.5
    assert [g["group_key"] for g in c.get("/api/groups?state=failed").json()["items"]] == [web["keys"][2]]
    assert [g["group_key"] for g in c.get("/api/groups?qa=fail").json()["items"]] == [web["keys"][1]]
    page = c.get("/api/groups?limit=1&offset=1&order=oldest").json()
    assert page["total"] == 3 and [g["group_key"] for g in page["items"]] == [web["keys"][1]]
    start = (T0 + timedelta(seconds=100)).isoformat()
    assert c.get("/api/groups", params={"start": start}).json()["total"] == 2
    assert c.get("/api/groups?state=bogus").status_code == 422
    assert c.get("/api/groups?limit=0").status_code == 422


def test_group_detail_and_missing_things(web):
    c = web["client"]
    g = c.get(f"/api/groups/{web['keys'][1]}").json()
    assert g["qa"] == "fail" and len(g["images"]) == 2 and g["images"][0]["qa_reasons"] == ["rms 12x the thermal"]
    assert c.get("/api/groups/2000-01-01T00:00:00").status_code == 404
    assert c.get("/api/sources/999999").status_code == 404
    assert c.get("/api/images/999999").status_code == 404


def test_images_sources_and_candidates(web):
    c = web["client"]
    assert c.get("/api/images?qa=fail").json()["total"] == 2
    assert c.get("/api/images?pb_corrected=true").json()["total"] == 2
    src = c.get(f"/api/sources/{web['source']}").json()
    assert src["stats"]["n_epochs"] == 2 and len(src["light_curve"]["flux_jy"]) == 2
    assert src["light_curve"]["qa_verdict"] == ["pass", "fail"]  # the failed epoch is shown and marked
    names = [s["name"] for s in c.get("/api/sources?order=flux").json()["items"]]
    assert names == ["SRC-1", "SRC-2"]
    assert [s["name"] for s in c.get("/api/sources?name=rc-2").json()["items"]] == ["SRC-2"]
    assert c.get("/api/candidates?status=open").json()["total"] == 1
    assert c.get("/api/candidates?status=rejected").json()["total"] == 0
    assert c.get("/api/candidates?status=nonsense").status_code == 422
    assert "/api/groups" in c.get("/openapi.json").json()["paths"]


def test_new_sources_are_listed_and_reviewed_by_an_operator(web):
    c, cid = web["client"], web["new_source"]
    res = c.get("/api/new-sources?status=open").json()
    assert res["total"] == 1
    item = res["items"][0]
    assert item["name"] == "CTG J100112.0+351200" and item["significance"] == 11.0
    assert item["detections"] == [{"image_id": item["detections"][0]["image_id"], "epoch_mjd": 60827.41,
                                   "flux_jy": 0.004, "snr": 13.3}]
    assert c.get("/api/new-sources?status=nonsense").status_code == 422
    assert c.post(f"/api/new-sources/{cid}/status", json={"status": "rejected"}).status_code == 401
    assert c.post(f"/api/new-sources/{cid}/status", json={"status": "rejected"}, headers=VIEWER).status_code == 403
    ok = c.post(f"/api/new-sources/{cid}/status", json={"status": "confirmed", "notes": "in two epochs"},
                headers=OPERATOR)
    assert ok.status_code == 200, ok.text
    assert c.get("/api/new-sources?status=confirmed").json()["items"][0]["notes"] == "in two epochs"
    assert c.post("/api/new-sources/999999/status", json={"status": "ended"}, headers=OPERATOR).status_code == 404
    page = c.get("/new-sources", headers={**OPERATOR, "accept": "text/html"}).text
    assert "CTG J100112.0+351200" in page and "/files/images/ns.png" in page
    form = c.post(f"/new-sources/{cid}/status", data={"status": "ended", "notes": ""}, headers=OPERATOR,
                  follow_redirects=False)
    assert form.status_code == 303 and c.get("/api/new-sources?status=ended").json()["total"] == 1


def test_actions_need_an_operator(web):
    c, key = web["client"], web["keys"][0]
    assert c.post(f"/api/groups/{key}/reprocess", json={}).status_code == 401
    assert c.post(f"/api/groups/{key}/reprocess", json={}, headers=VIEWER).status_code == 403
    assert c.post(f"/api/groups/{key}/reprocess", json={}, headers=_basic("operator", "wrong")).status_code == 401
    assert not web["published"]
    res = c.post(f"/api/groups/{key}/reprocess", json={"from_stage": "image", "tier": "deep"}, headers=OPERATOR)
    assert res.status_code == 200, res.text
    assert [a[0][:1] + a[0][2:] for a in web["published"]] == [(key, "image")]
    assert c.get(f"/api/groups/{key}").json()["state"] == "pending"
    # a group already pending is refused, with the reason
    again = c.post(f"/api/groups/{key}/reprocess", json={}, headers=OPERATOR)
    assert again.status_code in (409, 422) and key in again.json()["detail"]
    cand = web["candidate"]
    assert c.post(f"/api/candidates/{cand}/status", json={"status": "rejected"}).status_code == 401
    ok = c.post(f"/api/candidates/{cand}/status", json={"status": "rejected", "notes": "RFI"}, headers=OPERATOR)
    assert ok.status_code == 200 and c.get("/api/candidates?status=rejected").json()["items"][0]["notes"] == "RFI"
    assert c.post(f"/api/candidates/{cand}/status", json={"status": "bogus"}, headers=OPERATOR).status_code == 422


def test_reprocess_a_time_range(web):
    c = web["client"]
    res = c.post("/api/reprocess", json={"start": T0.isoformat(), "end": (T0 + timedelta(seconds=400)).isoformat()},
                 headers=OPERATOR)
    assert res.status_code == 200, res.text
    assert sorted(r["group_key"] for r in res.json()["runs"]) == web["keys"][:2]
    assert c.post("/api/reprocess", json={}, headers=OPERATOR).status_code == 422


def test_a_login_cookie_and_its_forgeries(web):
    from contimg.web.auth import COOKIE

    c = web["client"]
    bad = c.post("/login", data={"user": "operator", "password": "nope", "next": "/"}, follow_redirects=False)
    assert bad.status_code == 303 and "failed=1" in bad.headers["location"]
    good = c.post("/login", data={"user": "operator", "password": OPERATOR_PW, "next": "//evil.example/"},
                  follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/"  # no open redirect
    cookie = good.cookies[COOKIE]
    assert OPERATOR_PW not in cookie and "samesite=strict" in good.headers["set-cookie"].lower()
    assert "httponly" in good.headers["set-cookie"].lower()
    key = web["keys"][1]
    c.cookies.clear()
    forged = cookie.replace("operator|operator", "operator|operator ")
    assert c.post(f"/api/groups/{key}/reprocess", json={}, cookies={COOKIE: forged}).status_code == 401
    user, role, expiry, sig = cookie.split("|")
    stretched = f"{user}|{role}|{int(expiry) + 10**6}|{sig}"
    assert c.post(f"/api/groups/{key}/reprocess", json={}, cookies={COOKIE: stretched}).status_code == 401
    assert c.post(f"/api/groups/{key}/reprocess", json={}, cookies={COOKIE: cookie}).status_code == 200


def test_cookies_expire_and_die_with_a_changed_login():
    from pydantic import SecretStr

    from contimg.config import WebSettings
    from contimg.web.auth import Authenticator, Identity

    web = WebSettings(operator_password=SecretStr("a"), session_secret=SecretStr("k" * 32), session_hours=1)
    auth = Authenticator(web)
    cookie = auth.cookie_for(Identity("operator", "operator"), now=1000.0)
    assert auth.from_cookie(cookie, now=1000.0 + 3500) == Identity("operator", "operator")
    assert auth.from_cookie(cookie, now=1000.0 + 3700) is None
    assert Authenticator(web).from_cookie(cookie, now=1001.0) is not None  # the same key signs across restarts
    no_operator = Authenticator(WebSettings(session_secret=SecretStr("k" * 32)))
    assert no_operator.from_cookie(cookie, now=1001.0) is None
    random_key = Authenticator(WebSettings(operator_password=SecretStr("a")))
    assert random_key.from_cookie(cookie, now=1001.0) is None


def test_reading_can_be_closed(web):
    from fastapi.testclient import TestClient

    from contimg.web.app import create_app

    settings = web["settings"]
    closed = TestClient(create_app(settings.model_copy(update={"web": settings.web.model_copy(
        update={"public_read": False})})))
    assert closed.get("/api/groups").status_code == 401
    assert closed.get("/api/groups", headers=VIEWER).status_code == 200
    page = closed.get("/sources", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert closed.get("/healthz").status_code == 200  # health checks need no login


def test_files_only_from_the_data_root(web, tmp_path):
    c, root = web["client"], web["settings"].data_root
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "0.png").write_bytes(b"\x89PNG fake")
    (root / "secret.sqlite3").write_text("no")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG outside")
    (root / "images" / "link.png").symlink_to(outside)
    assert c.get("/files/images/0.png").content == b"\x89PNG fake"
    assert c.get("/files/secret.sqlite3").status_code == 404  # not a served type
    assert c.get("/files/../outside.png").status_code == 404
    assert c.get("/files/images/%2e%2e/%2e%2e/outside.png").status_code == 404
    assert c.get("/files/images/link.png").status_code == 404  # a link out of the root is outside it
    assert c.get(f"/files/{outside}").status_code == 404


def test_pages_render_and_hold_no_secret(web):
    c = web["client"]
    for url in ("/", f"/?night={T0.date()}", f"/groups/{web['keys'][1]}", "/sources", f"/sources/{web['source']}",
                "/candidates", "/new-sources", "/login"):
        r = c.get(url, headers={**OPERATOR, "accept": "text/html"})
        assert r.status_code == 200, (url, r.text[:300])
        assert OPERATOR_PW not in r.text and VIEWER_PW not in r.text
    overview = c.get(f"/?night={T0.date()}").text
    assert all(k in overview for k in web["keys"])
    png = c.get(f"/sources/{web['source']}/lightcurve.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert c.get("/groups/2000-01-01T00:00:00", headers={"accept": "text/html"}).status_code == 404
