"""The nightly scoring job against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from contimg.db import session_scope
from contimg.db import science as sci
from contimg.db.models import CandidateStatus, EseCandidate, Photometry, Source, VariabilityStats
from contimg.variability.metrics import variability_metrics
from contimg.pipeline.nightly import score_sources, sources_to_score

T0 = 61000.0  # first day of simulate_population


def test_nightly_scores_new_data_and_upserts_candidates(db_url, population, load_photometry):
    pop, _load = population, load_photometry
    cut = T0 + 250
    index = _load(db_url, pop, before=cut)
    # night 1
    summary = score_sources(db_url, threshold=5.0)
    assert summary.sources_scored == 40 and summary.rows_read == int((pop.t_days < cut).sum())
    with session_scope(db_url, readonly=True) as s:
        stats = {r.source_id: r for r in s.scalars(select(VariabilityStats))}
        cands = s.scalars(select(EseCandidate)).all()
    assert len(stats) == 40
    # the statistics are those of the library on the same light curves
    sel = pop.t_days < cut
    m = variability_metrics(pop.source_idx[sel], pop.flux[sel], pop.flux_err[sel])
    for i in range(40):
        row = stats[index[i]]
        assert row.n_epochs == m.n_epochs[i]
        assert row.chi2_nu == pytest.approx(m.chi2_nu[i], rel=1e-9)
        assert row.max_vs == pytest.approx(m.vs_max[i], rel=1e-9)
        assert row.last_epoch_mjd == pytest.approx(pop.t_days[sel & (pop.source_idx == i)].max())
    # every injected event that ended before the cut is a candidate, and nothing else
    done = pop.true_has_ese & (pop.true_t_center + pop.true_duration_days / 2 < cut)
    assert done.sum() >= 2
    flagged = {c.source_id for c in cands}
    assert {index[i] for i in np.flatnonzero(done)} <= flagged
    assert flagged <= {index[i] for i in np.flatnonzero(pop.true_has_ese)}
    assert all(c.status == CandidateStatus.NEW for c in cands)
    assert summary.candidates_created == len(cands)
    first = {c.source_id: (c.id, c.last_detected_mjd) for c in cands}

    # night 2: the rest of the year; candidates are updated, not duplicated
    _load(db_url, pop, after=cut)
    with session_scope(db_url, readonly=True) as s:
        assert sources_to_score(s).size == 40
    summary = score_sources(db_url, threshold=5.0)
    assert summary.sources_scored == 40 and summary.rows_read == pop.flux.size
    with session_scope(db_url, readonly=True) as s:
        cands = s.scalars(select(EseCandidate)).all()
        n_per_source = s.execute(select(EseCandidate.source_id, func.count()).group_by(EseCandidate.source_id)).all()
    assert all(n == 1 for _, n in n_per_source)
    assert summary.candidates_updated == len(first)
    for c in cands:
        if c.source_id in first:
            assert c.id == first[c.source_id][0] and c.last_detected_mjd > first[c.source_id][1]
    assert {index[i] for i in np.flatnonzero(pop.true_has_ese)} == {c.source_id for c in cands}
    template = cands[0].template
    assert 0.2 < template["depth"] < 0.6 and template["duration_days"] > 10

    # night 3: nothing new, nothing scored
    summary = score_sources(db_url, threshold=5.0)
    assert summary.sources_scored == 0 and summary.rows_read == 0


def test_nightly_in_a_callers_session_uses_normalised_fluxes(db_url, population, load_photometry):
    pop, _load = population, load_photometry
    index = _load(db_url, pop, before=T0 + 100)
    with session_scope(db_url) as s:
        rows = s.execute(select(Photometry.id, Photometry.source_id, Photometry.flux_jy, Photometry.flux_err_jy)
                         .order_by(Photometry.id)).all()
        # every row of every source normalised (x2), except one row of source 1
        skip = next(r.id for r in rows if r.source_id == index[1])
        sci.set_normalized_flux(s, [{"id": r.id, "norm_flux_jy": 2 * r.flux_jy, "norm_flux_err_jy": 2 * r.flux_err_jy}
                                    for r in rows if r.id != skip])
    with session_scope(db_url) as s:
        summary = score_sources(s, threshold=50.0)
        assert summary.sources_scored == 40
        normalised, mixed = s.get(VariabilityStats, index[0]), s.get(VariabilityStats, index[1])
    for i, stats, factor in ((0, normalised, 2.0), (1, mixed, 1.0)):  # a partly normalised source uses raw fluxes
        sel = (pop.source_idx == i) & (pop.t_days < T0 + 100)
        w = 1 / pop.flux_err[sel] ** 2
        assert stats.weighted_mean_jy == pytest.approx(factor * np.sum(w * pop.flux[sel]) / np.sum(w), rel=1e-9)


def test_small_chunks_and_reader_errors(db_url, tmp_path, population, load_photometry):
    """Many chunks through the prefetching reader give the same result; a reader error reaches the caller."""
    pop = population
    index = load_photometry(db_url, pop, before=T0 + 120)
    summary = score_sources(db_url, threshold=5.0, chunk_sources=7)
    assert summary.sources_scored == 40 and summary.rows_read == int((pop.t_days < T0 + 120).sum())
    with session_scope(db_url, readonly=True) as s:
        chunked = {r.source_id: r.chi2_nu for r in s.scalars(select(VariabilityStats))}
    whole = score_sources(db_url, threshold=5.0, rescore_all=True)
    assert whole.sources_scored == 40
    with session_scope(db_url, readonly=True) as s:
        assert {r.source_id: r.chi2_nu for r in s.scalars(select(VariabilityStats))} == chunked
    assert set(chunked) == set(index.values())
    with pytest.raises(Exception, match="no such table"):
        score_sources(f"sqlite:///{tmp_path / 'no-schema.sqlite3'}")


def test_scheduled_job_runs_the_scoring(db_settings, population, load_photometry):
    """The beat job's library entry point (housekeeping.nightly_variability -> run_nightly)."""
    from contimg.pipeline import housekeeping

    load_photometry(db_settings.database, population, before=T0 + 60)
    result = housekeeping.nightly_variability(db_settings)
    assert result["status"] == "ok"
    assert result["result"]["sources_scored"] == 40
    assert result["result"]["rows_read"] == int((population.t_days < T0 + 60).sum())


def test_new_candidates_of_the_scheduled_job_are_notified_once(db_settings, population, load_photometry):
    """run_nightly sends one ese_candidate message naming the new candidates; a night without new ones sends none."""
    from contimg.config import NotifySettings
    from contimg.pipeline.nightly import run_nightly
    from notify_helpers import WebhookReceiver

    hook = WebhookReceiver()
    try:
        settings = db_settings.model_copy(update={"notify": NotifySettings(webhook_url=hook.url, rate_limit_s=0)})
        load_photometry(settings.database, population)
        result = run_nightly(settings)
        assert result["candidates_created"] >= 2
        (body,) = hook.bodies
        assert body["kind"] == "ese_candidate"
        assert body["subject"] == f"{result['candidates_created']} new ESE candidate(s)"
        with session_scope(settings, readonly=True) as s:
            names = dict(s.execute(select(EseCandidate.id, Source.name).join(Source, Source.id == EseCandidate.source_id)).all())
        sent = body["data"]["candidates"]
        assert {c["candidate_id"]: c["source_name"] for c in sent} == names
        assert all(c["significance"] >= 5.0 and c["ra_deg"] is not None for c in sent)
        assert all(name in body["text"] for name in names.values())
        run_nightly(settings)  # nothing new: the candidates are updated, not created
        assert len(hook.bodies) == 1
    finally:
        hook.close()
