"""SQLAlchemy 2.0 typed models of the whole pipeline.

The models only describe tables; the code that reads and writes them takes a
:class:`~sqlalchemy.orm.Session` and lives in :mod:`contimg.db.groups`,
:mod:`contimg.db.products` and :mod:`contimg.db.science`. The schema itself is
created and evolved by the Alembic migrations in ``contimg/db/migrations``
(:func:`contimg.db.init_db`), never by ``create_all``. To change it: edit this
module, generate a revision (``alembic -c contimg/db/alembic.ini -x url=... revision
--autogenerate -m "..."``, see ``contimg/db/alembic.ini``), review it by hand, and
run ``tests/db/test_migrations.py``, which checks on SQLite and PostgreSQL that
models and migrations agree.

Conventions: only portable column types (SQLite and PostgreSQL); times are
timezone-aware UTC (:class:`~contimg.db.types.UTCDateTime`); astronomical epochs
are MJD floats (UTC scale); angles in degrees, beam axes in arcseconds, fluxes in
Jy; enumerations are stored as their string values with a CHECK constraint.

Tables, in the order data flows::

    observation_groups ─┬─ subband_files
                        ├─ stage_timings
                        └─ measurement_sets ─┬─ images ─┬─ photometry ── sources
                                             │    │     └─ components ─┘ (matched; optional)
                                             │    │          └─ new_source_detections ── new_sources
                                             │    └─ (combined by night into) mosaics
                                             │                             ├─ variability_stats
    calibration_sets ── calibration_tables   │                             └─ ese_candidates
           └──── (applied to) ───────────────┘
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from contimg.db.states import GroupState, utcnow
from contimg.db.types import BigIntegerPK, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can name what they alter on every backend."""

PATH_LENGTH = 1024


class CalTableType(str, enum.Enum):
    """Kind of a calibration table, in CASA's terms."""

    K = "K"
    """antenna delays"""
    B = "B"
    """bandpass"""
    G = "G"
    """complex gains (time-dependent)"""


class CandidateStatus(str, enum.Enum):
    """Review status of a candidate (ESE or new source). ``new`` and ``confirmed`` are open."""

    NEW = "new"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    ENDED = "ended"


OPEN_CANDIDATE_STATUSES: tuple[CandidateStatus, ...] = (CandidateStatus.NEW, CandidateStatus.CONFIRMED)
"""A source has at most one candidate in these states (updated night after night, not duplicated)."""


def _enum(cls: type[enum.Enum], name: str, length: int) -> Enum:
    """A portable enumeration column: VARCHAR of the values plus a CHECK constraint."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base of every contimg table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}
    if TYPE_CHECKING:
        __table__: ClassVar[Table]  # DeclarativeBase says FromClause; every contimg model maps one Table


class TimestampMixin:
    """``created_at`` / ``updated_at``, set by the ORM in UTC."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --------------------------------------------------------------------------- ingest and processing
class ObservationGroup(TimestampMixin, Base):
    """One ~309 s drift-scan interval: up to 16 subband files, processed as a unit."""

    __tablename__ = "observation_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_key: Mapped[str] = mapped_column(String(32), unique=True)
    """Canonical name, the group timestamp as ``YYYY-MM-DDTHH:MM:SS`` (UTC)."""
    timestamp: Mapped[datetime] = mapped_column(index=True)
    """Earliest file time of the group."""
    state: Mapped[GroupState] = mapped_column(
        _enum(GroupState, "group_state", 16), default=GroupState.COLLECTING, index=True
    )
    nsubbands: Mapped[int] = mapped_column(default=0)
    """Number of distinct subband files registered."""
    current_stage: Mapped[str | None] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(default=0)
    """How often the group has entered ``in_progress`` (stage timings are kept per attempt)."""
    retry_count: Mapped[int] = mapped_column(default=0)
    """Re-enqueues after a lost worker since the last (re)processing request."""
    error_message: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(255), index=True)
    """Celery id of the current run's canvas (set when published)."""
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    """Last sign of life of the run: stage boundaries, and every few seconds while a worker holds one of its tasks."""
    worker: Mapped[str | None] = mapped_column(String(1024))
    """Comma-separated ids (``name@host#instance``) of the workers running, or holding for later, a task of
    the current run; None while the run's next task waits in a queue."""
    node: Mapped[str | None] = mapped_column(String(255))
    """Node whose staging holds the run's conversion (from planning to combine), else None."""
    imaging_tier: Mapped[str | None] = mapped_column(String(16))
    """Imaging tier asked for by ``contimg reprocess --tier`` (e.g. a safer one after a failed image); None: the
    settings' tier."""
    calibrator_name: Mapped[str | None] = mapped_column(String(64))
    calibrator_beam_response: Mapped[float | None]

    subband_files: Mapped[list[SubbandFile]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="SubbandFile.subband"
    )
    stage_timings: Mapped[list[StageTiming]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="StageTiming.id"
    )
    measurement_sets: Mapped[list[MeasurementSet]] = relationship(back_populates="group")

    def __repr__(self) -> str:
        return f"<ObservationGroup {self.id} {self.group_key} {self.state.value if self.state else None}>"


class SubbandFile(Base):
    """One ``*_sbNN.hdf5`` file of a group."""

    __tablename__ = "subband_files"
    __table_args__ = (
        UniqueConstraint("group_id", "subband"),
        CheckConstraint("subband >= 0 AND subband < 16", name="subband_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("observation_groups.id", ondelete="CASCADE"), index=True)
    subband: Mapped[int]
    """0 (highest frequency) to 15."""
    path: Mapped[str] = mapped_column(String(PATH_LENGTH), unique=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    file_timestamp: Mapped[datetime | None]
    """The time in the file name."""
    discovered_at: Mapped[datetime] = mapped_column(default=utcnow)

    group: Mapped[ObservationGroup] = relationship(back_populates="subband_files")


class StageTiming(Base):
    """How long one stage took for one group in one attempt (rerunning a stage updates the row).

    The stage's time is split into *wait* and *work*: it waited from ``queued_at`` (the previous stage's end, or
    the run's publication for its first stage) until a worker took it (``started_at``), and again inside the
    stage while it was paused (the conversion's subband writes queued on their node, a calibration deferred for
    a calibration set). ``wait_seconds`` adds these up; ``seconds`` is the work alone.
    """

    __tablename__ = "stage_timings"
    __table_args__ = (UniqueConstraint("group_id", "stage", "attempt"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("observation_groups.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(default=1)
    queued_at: Mapped[datetime | None]
    """When the stage could have started: the previous stage's end in this attempt, else the run's publication."""
    started_at: Mapped[datetime]
    """When a worker first took the stage."""
    paused_at: Mapped[datetime | None]
    """Set while the stage waits again after it started (its next task queued); None while it works."""
    finished_at: Mapped[datetime | None]
    seconds: Mapped[float | None]
    """Work: the stage's time from ``queued_at`` to ``finished_at`` less ``wait_seconds``."""
    wait_seconds: Mapped[float | None]
    """Time spent waiting for a worker: before ``started_at``, and while paused."""
    status: Mapped[str] = mapped_column(String(16), default="running")
    """``running``, ``ok`` or ``failed``."""
    hostname: Mapped[str | None] = mapped_column(String(255))

    group: Mapped[ObservationGroup] = relationship(back_populates="stage_timings")


# --------------------------------------------------------------------------- products
class MeasurementSet(TimestampMixin, Base):
    """A Measurement Set written from a group."""

    __tablename__ = "measurement_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("observation_groups.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(String(PATH_LENGTH), unique=True)
    start_mjd: Mapped[float | None]
    end_mjd: Mapped[float | None]
    stage: Mapped[str] = mapped_column(String(32), default="converted")
    """Furthest processing step applied: ``converted``, ``calibrated``, ``imaged`` ..."""
    calibration_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("calibration_sets.id", ondelete="SET NULL"), index=True
    )
    """The calibration set applied to CORRECTED_DATA, if any."""
    calibrator_name: Mapped[str | None] = mapped_column(String(64))
    calibrator_beam_response: Mapped[float | None]
    validation: Mapped[dict[str, Any] | None]
    """The conversion's validation report."""

    group: Mapped[ObservationGroup | None] = relationship(back_populates="measurement_sets")
    calibration_set: Mapped[CalibrationSet | None] = relationship(foreign_keys=[calibration_set_id])
    images: Mapped[list[Image]] = relationship(back_populates="ms")


class CalibrationSet(Base):
    """The K/B/G tables solved together on one calibrator transit, applied together."""

    __tablename__ = "calibration_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    calibrator_name: Mapped[str | None] = mapped_column(String(64))
    solve_mjd: Mapped[float | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    qa: Mapped[dict[str, Any] | None]
    """QA of the solve: reference antenna, calibrator, solution statistics, plot paths (PNG beside the tables)."""
    qa_verdict: Mapped[str | None] = mapped_column(String(8))
    """The calibration gate's verdict (:mod:`contimg.calibration.gate`); a failed set is never registered."""

    tables: Mapped[list[CalibrationTable]] = relationship(
        back_populates="calibration_set", cascade="all, delete-orphan", order_by="CalibrationTable.apply_order"
    )


class CalibrationTable(Base):
    """One CASA calibration table and the time range it may be applied to."""

    __tablename__ = "calibration_tables"
    __table_args__ = (
        UniqueConstraint("calibration_set_id", "table_type"),
        UniqueConstraint("calibration_set_id", "apply_order"),
        CheckConstraint(
            "flagged_fraction IS NULL OR (flagged_fraction >= 0 AND flagged_fraction <= 1)",
            name="flagged_fraction_range",
        ),
        CheckConstraint("valid_end_mjd >= valid_start_mjd", name="validity_window"),
        Index("ix_calibration_tables_lookup", "table_type", "active", "valid_start_mjd"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    calibration_set_id: Mapped[int] = mapped_column(
        ForeignKey("calibration_sets.id", ondelete="CASCADE"), index=True
    )
    table_type: Mapped[CalTableType] = mapped_column(_enum(CalTableType, "cal_table_type", 1))
    apply_order: Mapped[int]
    path: Mapped[str] = mapped_column(String(PATH_LENGTH), unique=True)
    valid_start_mjd: Mapped[float]
    valid_end_mjd: Mapped[float]
    active: Mapped[bool] = mapped_column(default=True)
    source_ms_id: Mapped[int | None] = mapped_column(ForeignKey("measurement_sets.id", ondelete="SET NULL"))
    calibrator_name: Mapped[str | None] = mapped_column(String(64))
    flagged_fraction: Mapped[float | None]
    n_solutions: Mapped[int | None]
    """Unflagged solutions found (compare with ``n_expected``: CASA can drop some silently)."""
    n_expected: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    calibration_set: Mapped[CalibrationSet] = relationship(back_populates="tables")


class Image(Base):
    """A FITS image made from a Measurement Set."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(PATH_LENGTH), unique=True)
    ms_id: Mapped[int | None] = mapped_column(ForeignKey("measurement_sets.id", ondelete="SET NULL"), index=True)
    mid_mjd: Mapped[float | None] = mapped_column(index=True)
    ra_deg: Mapped[float | None]
    """Phase centre."""
    dec_deg: Mapped[float | None]
    beam_major_arcsec: Mapped[float | None]
    beam_minor_arcsec: Mapped[float | None]
    beam_pa_deg: Mapped[float | None]
    rms_jy: Mapped[float | None]
    """Noise, Jy/beam."""
    peak_jy: Mapped[float | None]
    dynamic_range: Mapped[float | None]
    pb_corrected: Mapped[bool] = mapped_column(default=False)
    tier: Mapped[str | None] = mapped_column(String(16))
    backend: Mapped[str | None] = mapped_column(String(16))
    qa_verdict: Mapped[str | None] = mapped_column(String(8), index=True)
    """``pass``, ``warn`` or ``fail`` (:mod:`contimg.imaging.gate`); a failed image feeds no science."""
    qa: Mapped[dict[str, Any] | None]
    """The verdict's reasons and the figures it judged."""
    files: Mapped[dict[str, Any] | None]
    """The product set's files by kind (``image``, ``pbcor``, ``pb``, ``residual``, ``model``, ``psf``,
    ``thumbnail``, ``log``), the same on both rows of a set: the manifest photometry and the pages read."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ms: Mapped[MeasurementSet | None] = relationship(back_populates="images")


class Mosaic(TimestampMixin, Base):
    """A night's primary-beam-weighted linear mosaic: its tiles (:mod:`contimg.imaging.mosaic`) and its inputs.

    One row per night (a re-run replaces it); the tiles' files are listed in ``tiles`` and in the JSON
    manifest at ``manifest``.
    """

    __tablename__ = "mosaics"

    id: Mapped[int] = mapped_column(primary_key=True)
    night: Mapped[date] = mapped_column(unique=True)
    """The UTC day whose images it combines (mid-times in ``[start_mjd, end_mjd)``)."""
    start_mjd: Mapped[float]
    end_mjd: Mapped[float]
    manifest: Mapped[str] = mapped_column(String(PATH_LENGTH))
    """The JSON manifest of the tiles."""
    n_inputs: Mapped[int]
    n_tiles: Mapped[int]
    image_ids: Mapped[list[int]] = mapped_column(JSON)
    """The flat-noise images combined (``images.id``)."""
    n_excluded: Mapped[int] = mapped_column(default=0)
    """The night's product sets left out (a ``fail`` verdict, or no primary-beam image in the manifest)."""
    ra_start_deg: Mapped[float | None]
    """The strip's west (earliest) edge; it runs east to ``ra_end_deg``, through 0 if that is smaller."""
    ra_end_deg: Mapped[float | None]
    dec_min_deg: Mapped[float | None]
    dec_max_deg: Mapped[float | None]
    beam_major_arcsec: Mapped[float | None]
    beam_minor_arcsec: Mapped[float | None]
    beam_pa_deg: Mapped[float | None]
    freq_hz: Mapped[float | None]
    min_noise_jy: Mapped[float | None]
    """The lowest value of the noise map (Jy/beam)."""
    median_noise_jy: Mapped[float | None]
    seconds: Mapped[float | None]
    tiles: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Per tile: index, pixel range, sky bounds, inputs, files (``image``, ``noise``, ``weight``), noise."""


# --------------------------------------------------------------------------- science
class Source(Base):
    """A catalogue source whose flux is measured in every image that covers it."""

    __tablename__ = "sources"
    __table_args__ = (Index(None, "dec_deg", "ra_deg"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    """Catalogue identifier, e.g. ``NVSS J123456+123456``."""
    ra_deg: Mapped[float]
    dec_deg: Mapped[float]
    flux_jy: Mapped[float | None]
    """Catalogue flux density at 1.4 GHz."""
    flux_err_jy: Mapped[float | None]
    spectral_index: Mapped[float | None]
    resolved: Mapped[bool] = mapped_column(default=False)
    confused: Mapped[bool] = mapped_column(default=False)
    is_calibrator: Mapped[bool] = mapped_column(default=False, index=True)
    quality: Mapped[str | None] = mapped_column(String(32))
    """Catalogue quality code, free form."""


class Photometry(Base):
    """The flux of one source measured in one image (forced photometry)."""

    __tablename__ = "photometry"
    __table_args__ = (
        UniqueConstraint("source_id", "image_id"),
        Index(None, "source_id", "epoch_mjd"),
    )

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    epoch_mjd: Mapped[float]
    flux_jy: Mapped[float]
    flux_err_jy: Mapped[float]
    norm_flux_jy: Mapped[float | None]
    """Flux after differential (reference-ensemble) normalisation."""
    norm_flux_err_jy: Mapped[float | None]
    upper_limit: Mapped[bool] = mapped_column(default=False)


class Component(Base):
    """A component found blindly in one image by the source finder (:mod:`contimg.photometry.finder`).

    Fluxes are primary-beam corrected; ``local_rms_jy`` is the flat-noise image's noise there. The
    matched catalogue source, if any, is within the cross-match radius (:mod:`contimg.photometry.crossmatch`);
    a component with no match is a new-source candidate.
    """

    __tablename__ = "components"
    __table_args__ = (Index(None, "dec_deg", "ra_deg"),)

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    ra_deg: Mapped[float]
    dec_deg: Mapped[float]
    ra_err_arcsec: Mapped[float | None]
    dec_err_arcsec: Mapped[float | None]
    peak_flux_jy: Mapped[float]
    """Peak brightness, Jy/beam, PB-corrected."""
    peak_flux_err_jy: Mapped[float | None]
    int_flux_jy: Mapped[float | None]
    """Integrated flux, Jy, PB-corrected."""
    int_flux_err_jy: Mapped[float | None]
    major_arcsec: Mapped[float | None]
    """Fitted FWHM axes (not deconvolved) and position angle (deg east of north)."""
    minor_arcsec: Mapped[float | None]
    pa_deg: Mapped[float | None]
    local_rms_jy: Mapped[float | None]
    """Noise of the flat-noise image at the component, Jy/beam."""
    beam_response: Mapped[float | None]
    """Primary-beam response by which the fluxes were divided."""
    flags: Mapped[int] = mapped_column(default=0)
    """The finder's fit flags (0: a clean fit; 256: an elongated Gaussian reaching outside its island,
    :data:`contimg.photometry.finder.ISLAND_EDGE_FLAG`)."""
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)
    """The nearest catalogue source within the match radius, if any."""
    separation_arcsec: Mapped[float | None]
    """Distance to that source."""


class VariabilityStats(Base):
    """Variability statistics of one source over all its photometry (one row per source)."""

    __tablename__ = "variability_stats"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    n_epochs: Mapped[int]
    weighted_mean_jy: Mapped[float | None]
    chi2_nu: Mapped[float | None]
    eta: Mapped[float | None]
    v: Mapped[float | None]
    """Coefficient of variation."""
    modulation_index: Mapped[float | None]
    max_vs: Mapped[float | None]
    max_m: Mapped[float | None]
    ese_score: Mapped[float | None]
    ese_significance: Mapped[float | None]
    last_photometry_id: Mapped[int | None] = mapped_column(BigInteger)
    """Highest photometry id included in these statistics."""
    last_epoch_mjd: Mapped[float | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EseCandidate(TimestampMixin, Base):
    """An extreme scattering event candidate; at most one open (new/confirmed) per source."""

    __tablename__ = "ese_candidates"
    __table_args__ = (
        Index(
            "uq_ese_candidates_open_source",
            "source_id",
            unique=True,
            sqlite_where=text("status IN ('new', 'confirmed')"),
            postgresql_where=text("status IN ('new', 'confirmed')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    status: Mapped[CandidateStatus] = mapped_column(
        _enum(CandidateStatus, "candidate_status", 16), default=CandidateStatus.NEW
    )
    first_detected_mjd: Mapped[float]
    last_detected_mjd: Mapped[float]
    score: Mapped[float]
    significance: Mapped[float]
    template: Mapped[dict[str, Any] | None]
    """Best-fit template parameters (e.g. centre, duration, depth)."""
    notes: Mapped[str | None] = mapped_column(Text)


__all__ = [
    "OPEN_CANDIDATE_STATUSES",
    "Base",
    "CalTableType",
    "CalibrationSet",
    "CalibrationTable",
    "CandidateStatus",
    "EseCandidate",
    "GroupState",
    "Image",
    "MeasurementSet",
    "NewSource",
    "NewSourceDetection",
    "ObservationGroup",
    "Photometry",
    "Source",
    "StageTiming",
    "SubbandFile",
    "VariabilityStats",
]


class NewSource(TimestampMixin, Base):
    """A new-source candidate: blind components with no catalogue counterpart that earlier epochs could not have
    missed (:mod:`contimg.photometry.newsource`), one row per position, its detections in
    :class:`NewSourceDetection`."""

    __tablename__ = "new_sources"
    __table_args__ = (Index(None, "dec_deg", "ra_deg"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    """``CTG Jhhmmss.s+ddmmss`` of the first detection's position."""
    ra_deg: Mapped[float]
    """Position: the error-weighted mean of the detections."""
    dec_deg: Mapped[float]
    status: Mapped[CandidateStatus] = mapped_column(
        _enum(CandidateStatus, "new_source_status", 16), default=CandidateStatus.NEW, index=True
    )
    first_detected_mjd: Mapped[float]
    last_detected_mjd: Mapped[float]
    n_detections: Mapped[int]
    peak_flux_jy: Mapped[float]
    """The brightest detection's PB-corrected peak brightness (Jy/beam; the flux of a point source)."""
    snr: Mapped[float]
    """The best detection's SNR in its own image."""
    significance: Mapped[float]
    """The first detection's flux above what the most constraining earlier epoch measured there, in that epoch's
    noise (:func:`contimg.photometry.newsource.newness`)."""
    n_prior_epochs: Mapped[int]
    """Earlier epochs that measured the position before the first detection."""
    prior_limit_jy: Mapped[float | None]
    """The faintest flux the deepest of them could have found (threshold x its noise)."""
    first_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    prior_image_ids: Mapped[list[int] | None] = mapped_column(JSON)
    """The earlier images that constrain it most (ids; the most constraining first, then the most recent), drawn in
    its cut-outs."""
    cutouts: Mapped[str | None] = mapped_column(String(PATH_LENGTH))
    """PNG strip of cut-outs: the earlier epochs that constrain it most, then its detections."""
    notes: Mapped[str | None] = mapped_column(Text)

    detections: Mapped[list["NewSourceDetection"]] = relationship(
        back_populates="new_source", cascade="all, delete-orphan", passive_deletes=True,
        order_by="NewSourceDetection.epoch_mjd")


class NewSourceDetection(Base):
    """One component of a new-source candidate: where and how bright it was found, and how new it was there."""

    __tablename__ = "new_source_detections"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True)
    new_source_id: Mapped[int] = mapped_column(ForeignKey("new_sources.id", ondelete="CASCADE"), index=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    epoch_mjd: Mapped[float]
    ra_deg: Mapped[float]
    dec_deg: Mapped[float]
    flux_jy: Mapped[float]
    """PB-corrected peak brightness."""
    flux_err_jy: Mapped[float | None]
    snr: Mapped[float]
    significance: Mapped[float | None]
    """Against the earlier epochs (NULL for a detection added to a known candidate: the earlier epochs are its own)."""

    new_source: Mapped[NewSource] = relationship(back_populates="detections")
