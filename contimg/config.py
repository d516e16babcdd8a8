"""Typed settings for the whole pipeline, read once at start-up.

Settings come from, in increasing priority: the defaults below (which run on one
machine), an optional TOML file named by ``CONTIMG_CONFIG``, and environment
variables ``CONTIMG_*``. Per-stage sections use a double underscore, e.g.
``CONTIMG_INGEST__TOLERANCE_S=30`` or, in the TOML file::

    data_root = "/data/contimg"
    [ingest]
    tolerance_s = 30

Each stage receives only its own section (``settings.ingest``,
``settings.conversion`` ...). Invalid values raise :class:`ConfigError` naming the
variable and the accepted values.

Example
-------
>>> from contimg.config import load_settings
>>> settings = load_settings()
>>> settings.paths.incoming          # doctest: +SKIP
PosixPath('contimg-data/incoming')
"""

from __future__ import annotations

import os
import shutil
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from contimg.errors import ConfigError
from contimg.pipeline.stages import STAGES, get_stage, step_time_limits

ENV_PREFIX = "CONTIMG_"
CONFIG_FILE_VAR = "CONTIMG_CONFIG"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSettings(_Section):
    """The producer: watching, grouping and enqueuing subband files."""

    tolerance_s: float = Field(60.0, gt=0, description="files whose timestamps differ by at most this belong to one group")
    group_timeout_s: float = Field(900.0, gt=0, description="a collecting group older than this is enqueued if it has min_subbands, else failed")
    min_subbands: int = Field(12, ge=1, le=16, description="fewest subbands an incomplete group may have and still be processed")
    stable_s: float = Field(2.0, ge=0, description="a file is complete when its size has not changed for this long")
    poll_interval_s: float = Field(2.0, gt=0, description="scan period of the polling observer and of timeout checks")
    polling: bool = Field(False, description="use the polling observer (network filesystems) instead of inotify")
    stale_in_progress_s: float = Field(7200.0, gt=0, description="an in_progress group whose heartbeat stopped this long ago is re-enqueued although its worker still answers (a hung step); must exceed every step timeout. A dead worker or node is noticed from its presence within presence_ttl_s")
    max_retries: int = Field(3, ge=0, description="how often a group is re-enqueued after a lost worker")
    sweep_interval_s: float = Field(15.0, gt=0, description="period of the stale-run sweep run by the beat process")
    retry_window_s: float = Field(86400.0, ge=0, description="a group that failed less than this long ago with an error naming one of its files is retried from convert when that file has since changed (size or mtime) and is now complete")
    max_file_retries: int = Field(2, ge=0, description="at most this many automatic retries after a file changed, per group; counted with the group's runs (attempt), so any earlier re-run uses one too; 0 turns them off")


class ConversionSettings(_Section):
    """UVH5 subbands to one Measurement Set."""

    processes: int = Field(0, ge=0, description="parallel subband writers for the single-node CLI (0: one per core)")
    staging_min_free_gb: float = Field(4.0, ge=0, description="/dev/shm is used for staging only if it has this much free")
    staging_margin: float = Field(1.2, ge=1, description="a convert node takes a group only if its staging has this many times the group's subband bytes free")
    timeout_s: float = Field(1800.0, gt=0, description="a conversion step (plan, one subband part, combine) running longer than this is killed")


class CalibrationSettings(_Section):
    """Finding the calibrator, solving and applying."""

    do_k: bool = Field(False, description="solve for antenna delays (K) before the bandpass")
    refant: str | None = Field(None, description="reference antenna name; None chooses one automatically")
    min_beam_response: float = Field(0.3, gt=0, le=1, description="a calibrator must be seen at least at this primary-beam response")
    min_calibrator_flux_jy: float = Field(1.0, gt=0, description="weakest usable calibrator (apparent flux)")
    max_flagged_fraction: float = Field(0.2, ge=0, le=1, description="a solve with more flagged solutions than this fails")
    bandpass_validity_h: float = Field(24.0, gt=0, description="a bandpass table is valid this long on each side of its solve")
    gain_validity_h: float = Field(6.0, gt=0, description="a gain table is valid this long on each side of its solve")
    model_min_flux_jy: float = Field(0.005, ge=0, description="catalogue sources fainter than this (apparent, at their best beam response in the group) are left out of MODEL_DATA")
    wait_for_solution_s: float = Field(1800.0, ge=0, description="a science group with no valid calibration set waits (retrying with backoff) this long for the night's calibrator group to be solved before it fails")
    wait_poll_s: float = Field(10.0, gt=0, description="a waiting science group asks again for a calibration set at least this often (its first delay is 5 s, then the time waited so far, up to this): a set registered while it waits is applied within this long; an ask costs well under a second of a worker slot")
    timeout_s: float = Field(3600.0, gt=0, description="a calibration step (solve or apply, CASA tasks included) running longer than this is killed")
    transit_fraction: float = Field(0.98, gt=0, le=1, description="a calibrator transit is solved once, on the group whose best response reaches this fraction of the response at transit (the group holding the transit); neighbours apply that solution")
    resolve_low_response: bool = Field(False, description="also solve on every group where the calibrator is usable (response >= min_beam_response) but past its transit, instead of applying the transit group's solution")


class ImagingSettings(_Section):
    """Imaging with WSClean (default) or CASA tclean."""

    backend: Literal["wsclean", "tclean"] = "wsclean"
    tier: Literal["quicklook", "standard", "deep"] = "standard"
    pb_limit: float = Field(0.2, gt=0, lt=1, description="image out to this primary-beam response")
    robust: float = Field(0.0, ge=-2, le=2, description="Briggs robust parameter")
    threads: int = Field(0, ge=0, description="threads for the imager (0: one per core)")
    timeout_s: float = Field(3600.0, gt=0, description="an imager run longer than this is killed (the image step, QA included, gets 25 % more)")
    spectral_fit_dynamic_range: float = Field(7000.0, gt=0, description="image with a spectral fit (WSClean -join-channels over spectral_fit_channels parts of the band) when the brightest catalogue source in the field is this many times the predicted thermal noise (apparent flux): its spectrum, its own and the beam's, leaves sidelobes of ~1.4e-4 of its flux that a single-term CLEAN cannot remove, above the noise from ~7000 times it")
    spectral_fit_channels: int = Field(2, ge=2, le=16, description="parts of the band deconvolved jointly when the spectral fit is on")
    subtract_dynamic_range: float = Field(2000.0, ge=0, description="WSClean images a group with the catalogue sources brighter than this many times the predicted thermal noise (apparent flux) subtracted from its visibilities by their exact model (beam along the drift and across the band), and restores them in the image afterwards: their sidelobes, which one flux per CLEAN component cannot model, no longer cost the minor loop (contimg.imaging.subtract); 0 switches it off")


class QaSettings(_Section):
    """Thresholds of the QA gates: a product whose verdict is fail never feeds the science."""

    image_rms_warn: float = Field(3.0, gt=1, description="an image whose residual rms exceeds the thermal noise predicted from its MS by this factor gets a warning")
    image_rms_fail: float = Field(10.0, gt=1, description="... and fails above this factor (a diverged deconvolution reaches thousands)")
    image_dynamic_range_floor: float = Field(1000.0, gt=1, description="near a source of flux S the residual rms is judged against S / this (calibration and deconvolution errors), when that exceeds the thermal noise")
    image_negative_min_sigma: float = Field(10.0, gt=0, description="negative pixels are judged only below -this many times the noise")
    image_negative_warn: float = Field(0.15, gt=0, description="an image whose most negative pixel is deeper than this fraction of its peak gets a warning")
    image_negative_fail: float = Field(0.4, gt=0, description="... and fails deeper than this fraction")
    image_min_dynamic_range: float = Field(5.0, ge=0, description="an image with a lower dynamic range (peak / rms) gets a warning")
    beam_tolerance: float = Field(3.0, gt=1, description="a restoring beam (geometric mean) beyond this factor of WSClean's theoretical beam gets a warning")
    flux_scale_min_snr: float = Field(20.0, gt=0, description="catalogue sources expected at least this many times the noise check an image's flux scale")
    flux_scale_warn: float = Field(0.1, gt=0, description="an image whose bright catalogue sources measure a median flux further than this fraction from the catalogue gets a warning")
    flux_scale_fail: float = Field(0.25, gt=0, description="... and fails further than this fraction")
    astrometry_warn: float = Field(0.2, gt=0, description="an image whose blind components lie further from their catalogue matches (median offset of bright, compact, isolated matches) than this fraction of the restoring beam's minor axis gets a warning")
    astrometry_fail: float = Field(0.5, gt=0, description="... and fails further than this fraction")
    astrometry_min_matches: int = Field(3, ge=1, description="the astrometric offset is judged only on at least this many clean matches")
    cal_snr_warn: float = Field(20.0, gt=0, description="a calibration table whose median solution SNR is below this gets a warning")
    cal_snr_fail: float = Field(5.0, gt=0, description="... and fails below this")
    cal_model_ratio_warn: float = Field(0.02, gt=0, description="a calibration set whose corrected calibrator visibilities differ from its model by more than this fraction (median amplitude ratio) gets a warning")
    cal_model_ratio_fail: float = Field(0.05, gt=0, description="... and fails beyond this fraction")
    cal_chi2_warn: float = Field(5.0, gt=0, description="a calibration set whose corrected calibrator has a larger reduced chi-squared against its model gets a warning")
    photometry_correction_warn: float = Field(0.1, gt=0, description="an image whose normalisation correction differs from 1 by more than this fraction gets a warning")
    photometry_correction_fail: float = Field(0.3, gt=0, description="... and fails beyond this fraction")
    photometry_scatter_warn: float = Field(0.02, gt=0, description="an image whose reference ensemble agrees only to worse than this (relative uncertainty of the correction) gets a warning")
    photometry_scatter_fail: float = Field(0.1, gt=0, description="... and fails beyond this")
    cal_scatter_warn: float = Field(0.2, gt=0, description="a bandpass whose amplitudes differ from the previous set's by more than this fraction (median) gets a warning")


class PhotometrySettings(_Section):
    """Forced photometry and differential normalisation."""

    min_beam_response: float = Field(0.3, gt=0, le=1, description="measure catalogue sources above this primary-beam response")
    reference_min_snr: float = Field(50.0, gt=0, description="reference sources must have at least this SNR")
    baseline_epochs: int = Field(10, ge=1, description="epochs used to establish each reference's baseline flux")
    timeout_s: float = Field(1800.0, gt=0, description="a photometry step running longer than this is killed")
    find_sources: bool = Field(True, description="run the blind source finder (PyBDSF) on every image the image stage records, store its components and judge the image's astrometry with them")
    finder_seed_clip: float = Field(5.0, gt=0, description="the finder seeds islands at pixels this many sigma above the background")
    finder_flood_clip: float = Field(4.0, gt=0, description="... and grows them over pixels above this many sigma")
    finder_rms_box_beams: float = Field(18.0, ge=0, description="the side of the finder's sliding background and noise box, in restoring-beam major axes (0: PyBDSF chooses; it chose boxes of 80 arcmin beside bright sources, whose residuals then became hundreds of spurious components)")
    crossmatch_radius_beams: float = Field(1.0, gt=0, description="a component matches the nearest catalogue source within this many restoring-beam major axes")


class NewSourceSettings(_Section):
    """The new-source search on every recorded image (contimg.photometry.newsource)."""

    enabled: bool = Field(True, description="search the components of every image the image stage records for new sources (needs photometry.find_sources)")
    min_snr: float = Field(7.0, gt=0, description="an unmatched component is considered at this SNR or more in its own image")
    detection_sigma: float = Field(5.0, gt=0, description="a candidate stands this many sigma (of the most constraining earlier epoch's noise) above what that epoch measured at its position")
    seen_sigma: float = Field(4.0, gt=0, description="a component is not new where an earlier epoch measured this many sigma (of its noise) or more")
    max_size_ratio: float = Field(1.5, gt=1, description="considered components are compact: integrated / peak flux below this plus twice its error")
    confusion_beams: float = Field(3.0, ge=0, description="considered components have no brighter catalogue source or component within this many restoring-beam major axes")
    association_beams: float = Field(1.0, gt=0, description="a detection within this many beam major axes of a known candidate is another detection of it")
    same_pass_hours: float = Field(1.0, gt=0, description="earlier epochs are images whose mid-time is more than this before (another pass over the same sky; the groups of one drift see a position within ~15 minutes)")
    max_prior_epochs: int = Field(60, ge=1, description="at most this many earlier images (the most recent) are measured at a considered position")


class VariabilitySettings(_Section):
    """Nightly variability scoring and ESE detection."""

    nightly_hour_utc: int = Field(3, ge=0, le=23, description="hour (UTC) of the nightly scoring job")
    nightly_minute: int = Field(0, ge=0, le=59, description="minute of the nightly scoring job")
    ese_threshold: float = Field(5.0, gt=0, description="ESE significance above which a source becomes a candidate")


class MosaicSettings(_Section):
    """Nightly primary-beam-weighted linear mosaics of the QA-passed images (contimg.imaging.mosaic)."""

    hour_utc: int = Field(4, ge=0, le=23, description="hour (UTC) of the nightly mosaic job, which combines the previous UTC day's images")
    minute: int = Field(0, ge=0, le=59, description="minute of the nightly mosaic job")
    pb_limit: float = Field(0.2, gt=0, lt=1, description="per image, pixels below this primary-beam response are left out; mosaic pixels weighing less than one median-noise image at this response are blank")
    tile_size: int = Field(4096, ge=256, le=32768, description="mosaic tiles are at most this many pixels on a side (memory: ~40 bytes a tile pixel plus one input image)")


class MonitoringSettings(_Section):
    """Flower and status."""

    flower_port: int = Field(5555, ge=1, le=65535)
    flower_address: str = "127.0.0.1"
    flower_user: str = "contimg"
    flower_password: SecretStr = SecretStr("contimg")


class RetentionSettings(_Section):
    """Which imaging products are kept: the PSF, clean model, residual and imager log are QA inputs, not science."""

    delete_kinds: list[Literal["psf", "model", "residual", "log"]] = Field(default_factory=list, description="files of an image set deleted once its image passed QA (pass or warn) and is older than after_hours; an image that failed QA keeps everything for inspection; reprocessing from the image stage makes them again (default: keep all)")
    after_hours: float = Field(24.0, ge=0, description="delete them this long after the image was recorded")
    minute: int = Field(30, ge=0, le=59, description="minute of every hour at which beat runs the retention job")


class WebSettings(_Section):
    """The operator's window: ``contimg web`` (FastAPI), its JSON API and pages."""

    host: str = Field("127.0.0.1", description="address the web server binds")
    port: int = Field(8080, ge=1, le=65535, description="its port")
    public_read: bool = Field(True, description="read-only pages and API open to anyone who reaches the server; false: they need a viewer or operator login too")
    viewer_user: str = Field("viewer", description="user name of the read-only login")
    viewer_password: SecretStr | None = Field(None, description="its password (none: no viewer login)")
    operator_user: str = Field("operator", description="user name of the operator login (reprocess, candidate review)")
    operator_password: SecretStr | None = Field(None, description="its password (none: no one may change state through the web)")
    session_secret: SecretStr | None = Field(None, description="key that signs login cookies (none: a random key per server process, so logins end when it restarts)")
    session_hours: float = Field(12.0, gt=0, description="a login lasts this long")
    page_size: int = Field(100, ge=1, le=5000, description="rows per page of lists (the API's default limit)")


NotifyEvent = Literal["group_failed", "qa_failed", "ese_candidate", "new_source"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("group_failed", "qa_failed", "ese_candidate", "new_source")
"""The events that can be notified: a group failed, a product (calibration set, image, photometry) failed its QA
gate, new ESE candidates were found by the nightly scoring, an image held a new-source candidate."""


class NotifySettings(_Section):
    """Notifications of events to a webhook and by e-mail, rate-limited per event kind (docs/notifications.md)."""

    webhook_url: SecretStr | None = Field(None, description="URL that receives each notification as a JSON POST (none: no webhook); a secret: it often carries a token")
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="a webhook that has not answered within this is given up (the cost of a dead one, once per rate-limit window)")
    smtp_host: str | None = Field(None, description="SMTP server that sends the e-mail notifications (none: no e-mail)")
    smtp_port: int = Field(587, ge=1, le=65535, description="its port")
    smtp_starttls: bool = Field(True, description="switch to TLS with STARTTLS before logging in")
    smtp_user: str | None = Field(None, description="SMTP login (none: send without logging in)")
    smtp_password: SecretStr | None = Field(None, description="its password")
    smtp_from: str = Field("contimg@localhost", description="sender address of the e-mails")
    smtp_to: list[str] = Field([], description="recipients (a JSON list in the environment, e.g. '[\"ops@example.org\"]'); none: no e-mail")
    smtp_timeout_s: float = Field(10.0, gt=0, le=120, description="an SMTP server that has not answered within this is given up")
    events: list[NotifyEvent] = Field(["group_failed", "qa_failed", "ese_candidate", "new_source"], description="the events notified (a JSON list in the environment): group_failed, qa_failed, ese_candidate, new_source")
    rate_limit_s: float = Field(600.0, ge=0, description="at most one message per event kind in this many seconds, across every process and node sharing the data root; the ones held back are counted and summarised in the next (0: no limit)")

    @field_validator("webhook_url", "smtp_host", "smtp_user", "smtp_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty value (``CONTIMG_NOTIFY__WEBHOOK_URL=`` or compose's ``${VAR:-}``) means unset."""
        if value is None or (isinstance(value, (str, SecretStr)) and not str(
                value.get_secret_value() if isinstance(value, SecretStr) else value).strip()):
            return None
        return value

    @property
    def enabled(self) -> bool:
        """True if a webhook or e-mail (server and recipients) is configured."""
        return self.webhook_url is not None or (self.smtp_host is not None and bool(self.smtp_to))


class CelerySettings(_Section):
    """Worker behaviour of the Celery cluster."""

    visibility_timeout_s: int = Field(21600, gt=0, description="Redis visibility timeout; must exceed the longest task")
    result_expires_s: int = Field(86400, gt=0, description="task results are kept this long")
    max_memory_per_child_mb: int = Field(6000, gt=0, description="a worker child over this resident memory is replaced after its task")
    concurrency: int = Field(0, ge=0, description="worker processes (0: one per core)")
    presence_interval_s: float = Field(5.0, gt=0, description="a worker refreshes its presence in Redis and the heartbeat of the groups it is working on this often")
    presence_ttl_s: float = Field(30.0, gt=0, description="a worker whose presence was not refreshed for this long is dead: its groups are re-planned on live workers")
    publish_retry_s: float = Field(180.0, gt=0, description="publishing a task (the next step of a chain) is retried this long while the broker is unreachable")
    publisher: str = Field("workers.canvas:enqueue_group", description="module:function publishing a group's run (enqueue(group_key, token, from_stage, settings=...)); the library calls it for reprocessing, the producer and the sweep of the CLI use the Celery canvas")
    last_stage: str | None = Field(None, description="a group's run ends after this stage (None: after the last stage), e.g. convert for a conversion-only cluster; one of the stage registry's stages (contimg.pipeline.stages)")

    @field_validator("last_stage")
    @classmethod
    def _known_stage(cls, value: str | None) -> str | None:
        if value is not None and value not in STAGES:
            raise ValueError(f"unknown stage {value!r}; stages: {', '.join(STAGES)}")
        return value


class Paths(BaseModel):
    """The directories under the data root, resolved."""

    model_config = ConfigDict(frozen=True)

    root: Path
    incoming: Path
    ms: Path
    images: Path
    caltables: Path
    state: Path
    staging: Path

    def ensure(self) -> "Paths":
        """Create every directory (idempotent) and return ``self``."""
        for p in (self.root, self.incoming, self.ms, self.images, self.caltables, self.state, self.staging):
            p.mkdir(parents=True, exist_ok=True)
        return self




class _TomlSource(PydanticBaseSettingsSource):
    """Settings from the TOML file named by ``CONTIMG_CONFIG`` (lowest priority after defaults)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        name = os.environ.get(CONFIG_FILE_VAR)
        if name:
            path = Path(name)
            try:
                self._data = tomllib.loads(path.read_text())
            except FileNotFoundError as exc:
                raise ConfigError(f"{CONFIG_FILE_VAR}={name}: no such file") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{CONFIG_FILE_VAR}={name}: not valid TOML: {exc}") from exc

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """All contimg settings; see the module docstring for how they are read."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_root: Path = Field(Path("contimg-data"), description="root of incoming/, ms/, images/, caltables/, state/")
    staging_dir: Path | None = Field(None, description="fast scratch space for MS parts (default /dev/shm/contimg, else <data_root>/tmp)")
    database_url: str | None = Field(None, description="SQLAlchemy URL (default sqlite:///<data_root>/state/contimg.sqlite3)")
    broker_url: str = Field(DEFAULT_REDIS_URL, description="Celery broker (Redis)")
    result_backend: str | None = Field(None, description="Celery result backend (default: the broker URL)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    umask: str = Field("027", pattern=r"^0?[0-7]{3}$", description="file mode creation mask of every contimg process: products and the database are not world-readable (three octal digits, e.g. 027; 022 makes them world-readable)")

    ingest: IngestSettings = IngestSettings()
    conversion: ConversionSettings = ConversionSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    imaging: ImagingSettings = ImagingSettings()
    photometry: PhotometrySettings = PhotometrySettings()
    qa: QaSettings = QaSettings()
    new_sources: NewSourceSettings = NewSourceSettings()
    variability: VariabilitySettings = VariabilitySettings()
    mosaic: MosaicSettings = MosaicSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    web: WebSettings = WebSettings()
    retention: RetentionSettings = RetentionSettings()
    notify: NotifySettings = NotifySettings()
    celery: CelerySettings = CelerySettings()

    @model_validator(mode="after")
    def _timeouts_in_order(self) -> "Settings":
        """Step time limits < stale threshold < Redis visibility timeout; presence refreshed within its TTL."""
        limits = self.step_time_limits()
        longest = max(limits, key=limits.__getitem__)
        stale = self.ingest.stale_in_progress_s
        problems = []
        if limits[longest] >= stale:
            problems.append(f"the {longest} step may run {limits[longest]:.0f} s "
                            f"({get_stage(longest).timeout_variable}), not less than CONTIMG_INGEST__STALE_IN_PROGRESS_S="
                            f"{stale:g}: a running step would be taken for a lost one")
        if stale >= self.celery.visibility_timeout_s:
            problems.append(f"CONTIMG_INGEST__STALE_IN_PROGRESS_S={stale:g} must be less than "
                            f"CONTIMG_CELERY__VISIBILITY_TIMEOUT_S={self.celery.visibility_timeout_s}: Redis would "
                            "redeliver a running task before the sweep could tell it is lost")
        if 2 * self.celery.presence_interval_s > self.celery.presence_ttl_s:
            problems.append(f"CONTIMG_CELERY__PRESENCE_TTL_S={self.celery.presence_ttl_s:g} must be at least twice "
                            f"CONTIMG_CELERY__PRESENCE_INTERVAL_S={self.celery.presence_interval_s:g}")
        if problems:
            raise ValueError("timeouts out of order: " + "; ".join(problems))
        return self

    def step_time_limits(self) -> dict[str, float]:
        """The hard time limit (s) of one task of each stage (Celery kills the task's process after it).

        From the stage registry (:func:`contimg.pipeline.stages.step_time_limits`): each stage's
        ``timeout_s``; the imaging step gets the imager's own timeout plus 25 % (primary-beam
        correction and QA), so that WSClean's timeout, which names the MS and the log, fires first.
        """
        return step_time_limits(self)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The sources settings are read from, highest priority first (pydantic-settings hook).

        Arguments to ``Settings(...)``, then ``CONTIMG_*`` environment variables, then the TOML file named
        by ``CONTIMG_CONFIG``; ``.env`` files and secret files are not read.

        Parameters
        ----------
        settings_cls
            The settings class being built (:class:`Settings`).
        init_settings
            Keyword arguments given to the constructor.
        env_settings
            The environment (``CONTIMG_`` prefix, ``__`` between nested names).
        dotenv_settings
            Ignored.
        file_secret_settings
            Ignored.

        Returns
        -------
        tuple of PydanticBaseSettingsSource
            ``(init_settings, env_settings, TOML file)``.

        Raises
        ------
        contimg.errors.ConfigError
            ``CONTIMG_CONFIG`` names a missing file or one that is not valid TOML.
        """
        return (init_settings, env_settings, _TomlSource(settings_cls))

    # ------------------------------------------------------------------ derived
    @property
    def broker_configured(self) -> bool:
        """True if the broker URL was given explicitly (env, file or argument)."""
        return "broker_url" in self.model_fields_set

    @property
    def result_backend_url(self) -> str:
        return self.result_backend or self.broker_url

    @property
    def database(self) -> str:
        """The database URL, defaulting to SQLite under the data root."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_root / 'state' / 'contimg.sqlite3').absolute()}"

    @cached_property
    def paths(self) -> Paths:
        """Resolved directories (not created; call ``settings.paths.ensure()``)."""
        root = self.data_root.absolute()
        return Paths(
            root=root,
            incoming=root / "incoming",
            ms=root / "ms",
            images=root / "images",
            caltables=root / "caltables",
            state=root / "state",
            staging=self._resolve_staging(root),
        )

    def _resolve_staging(self, root: Path) -> Path:
        if self.staging_dir is not None:
            return self.staging_dir.absolute()
        shm = Path("/dev/shm")
        need = self.conversion.staging_min_free_gb * 1e9
        if shm.is_dir() and os.access(shm, os.W_OK):
            try:
                if shutil.disk_usage(shm).free >= need:
                    return shm / "contimg"
            except OSError:
                pass
        return root / "tmp"


_NON_SETTING_VARS = {CONFIG_FILE_VAR, "CONTIMG_CASA_LOG_DIR"}
"""CONTIMG_* variables that are not settings (``CONTIMG_TEST_*`` are the tests' own;
``CONTIMG_CASA_LOG_DIR`` is set by :func:`contimg.casa_env.configure_environment`)."""


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p) for p in loc).upper()


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings.

    Parameters
    ----------
    **overrides
        Values that take precedence over the environment (used by tests and by
        command-line options).

    Raises
    ------
    ConfigError
        For every invalid value, naming the environment variable and what is
        accepted, e.g. ``CONTIMG_IMAGING__BACKEND='casa': Input should be
        'wsclean' or 'tclean'``.
    """
    unknown = sorted(
        k for k in os.environ
        if k.startswith(ENV_PREFIX)
        and k not in _NON_SETTING_VARS
        and not k.startswith(ENV_PREFIX + "TEST_")
        and k[len(ENV_PREFIX):].split("__")[0].lower() not in Settings.model_fields
    )
    if unknown:
        known = ", ".join(_env_name((f,)) for f in Settings.model_fields)
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {known}")
    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        lines = []
        for err in exc.errors():
            name = _env_name(err["loc"]) if err["loc"] else ENV_PREFIX + "*"
            if err["loc"] and os.environ.get(CONFIG_FILE_VAR) and name not in os.environ:
                # The value did not come from the environment: name the file's key too.
                key = ".".join(str(p) for p in err["loc"])
                name = f"{name} (or {key!r} in {os.environ[CONFIG_FILE_VAR]})"
            if err["type"] == "extra_forbidden":
                lines.append(f"{name}: unknown setting")
            elif not err["loc"] and err["type"] == "value_error":  # a check across settings: its message names them
                lines.append(str(err["msg"]).removeprefix("Value error, "))
            else:
                lines.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid contimg settings:\n  " + "\n  ".join(lines)) from None
