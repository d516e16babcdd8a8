"""Quality tiers: how hard the imager works on a group.

=========== ======= ======== ===== ===== ============== ========= ========= ===============================
tier        niter   major    mgain gain  auto-threshold auto-mask smearing  use
                    cycles               (sigma)        (sigma)   at edge
=========== ======= ======== ===== ===== ============== ========= ========= ===============================
quicklook   2000    2        0.8   0.1   5              --        2 %       a first look minutes after the
                                                                            data arrive: brightest sources
standard    50000   6        0.95  0.1   3              5         1 %       the nightly product: photometry,
                                                                            QA, the database (default)
deep        200000  12       0.7   0.1   1              3         none      reprocessing: clean to the
                                                                            noise inside a mask grown from
                                                                            3-sigma peaks, no averaging
=========== ======= ======== ===== ===== ============== ========= ========= ===============================

All tiers use Briggs weighting (``settings.imaging.robust``, default 0),
Hogbom CLEAN of Stokes I over the whole band (multi-frequency synthesis into
one image at the mean channel frequency), and w-term correction. The
``auto-threshold`` stops minor cycles at that many times the residual rms;
``auto-mask`` first cleans everything above that many sigma, then continues
inside the mask of what it found down to the threshold (WSClean's
``-auto-mask``/``-auto-threshold``; for tclean ``usemask='auto-multithresh'``
with ``nsigma``). With a catalogue mask (``mask_catalog``), cleaning is
restricted to circles around the known sources instead.

The w-gridder's accuracy is 1e-3 for quicklook and standard (kernel
support 5 instead of 7 cells; gridding errors ~1e-3 of the brightest
source, well below the thermal noise of one group) and 1e-5 for deep.

Why the standard tier is what it is (measured on the full-scale simulated
group of ``benchmarks/imaging.py``: 96 antennas, 768 channels, 24
integrations, thermal noise, 1536^2 pixels of 5 arcsec, 2 threads, quiet
machine, load average 1.6-2.6; median flux error of the 3 SNR > 50 sources
after PB correction, restoring-beam fit at the known position):

=============================== ====== ===== ========== ========= =======
standard tier                   wall   CPU   flux error residual  major
                                (s)    (s)              rms (uJy) cycles
=============================== ====== ===== ========== ========= =======
mgain 0.8, accuracy 1e-4 (old)  167    207   0.19 %     281.1     4
mgain 0.9, accuracy 1e-4        112    205   0.63 %     281.0     4
mgain 0.9, accuracy 1e-3        90     161   0.66 %     281.0     4
mgain 0.95, accuracy 1e-3 (now) 74     131   0.29 %     281.2     3
=============================== ====== ===== ========== ========= =======

(The first run overlapped another engineer's job during its first passes,
so its wall time is high; its CPU time is comparable.) Deconvolution
itself takes under a second: the time is all gridding and prediction
(about 8 s per pass at 1e-3, 10-11 s at 1e-4; 1 PSF + 1 + per major cycle
one prediction and one gridding). So the levers are the number of passes
and the cost of one pass:

* accuracy 1e-3 instead of 1e-4: each pass ~25 % faster, flux error and
  residual rms unchanged within the scatter of three sources;
* mgain 0.95: the sky is dominated by compact sources whose PSF the minor
  cycle subtracts accurately over the whole 1536^2 image, so the first major
  cycle may clean down to 5 % of the peak; the masked deeper stage then
  needs one cycle less (3 major cycles instead of 4) at the same residual
  rms. tclean gets the same major-cycle depth (``maxpsffraction`` =
  1 - mgain = 0.05), so the side-by-side comparison stays like for like.

Side by side in one run of ``benchmarks/imaging.py --prototype`` (standard
tier, 1536^2 at 5 arcsec, 2 threads, load average 1.4-1.7), with the worst-
baseline averaging size of the time: WSClean 73.4 s wall / 131 CPU s, flux
error 0.29 %, residual rms 281.2 uJy; tclean 242.7 s / 390.6 CPU s, 1.15 %,
278.6 uJy; speedup 3.31 (CPU 2.98). With the averaging planned by
:mod:`contimg.imaging.smearing` (10.1 wavelengths: the edge is the image
corner, 1.5 deg): WSClean 35.8 s / 63 CPU s, 0.16 %, 277.6 uJy; tclean
214.1 s / 347 CPU s, 1.15 %, 278.6 uJy; speedup 5.98 (CPU 5.49).

Three major cycles is the floor with auto-masking: the unmasked stage must
reach the auto-mask level (5 sigma) before the masked one starts, and
WSClean refuses an auto-mask level at or below the auto-threshold
("The auto-masking threshold was smaller or equal to the auto-threshold").

WSClean 3.1 already reorders a single-SPW MS by default (``-reorder`` made
no difference: 3 s of reordering, passes equally fast).

"Smearing at edge" is the largest loss of peak flux that WSClean's
baseline-dependent time averaging may add at the edge of the field (the
pb_limit radius plus half the drift: 2.6 deg on a full-scale group).
:func:`contimg.imaging.smearing.plan_baseline_averaging` computes it from the
MS's own uv tracks, WSClean's averaging rule and the Briggs weights, and
picks the largest ``-baseline-averaging`` size within the budget: short
baselines, whose uv points move slowly, are averaged over several
integrations, the longest not at all. On the full-scale group the standard
tier gets 6.35 wavelengths (40 % of the rows left), which the model puts at
0.99 % at 2.6 deg; imaged without noise, with and without it, the sources
between 0.2 and 2.0 deg moved by 0.4 % at most (the model is conservative
there). tclean has no equivalent and always grids every visibility.

Averaging channels as well does not fit the budget: 244 kHz channels
already smear 0.26 % at 2.6 deg on DSA-110's 2.7 km baselines, and pairs
of them 1.05 % (Briggs 0, the same model), before any time averaging.

On the field that :func:`~contimg.imaging.geometry.derive_geometry` derives
for a full-scale group (3840 x 3072 pixels of 5 arcsec: out to 20 % of the
time-averaged beam at 1311 MHz, swept along the 1 deg drift), standard
tier, 2 threads, quiet machine (``benchmarks/imaging.py``, its default geometry):

====================================== ====== ===== ========== =========
``-baseline-averaging``                wall   CPU   flux error residual
                                       (s)    (s)   (median)   rms (uJy)
====================================== ====== ===== ========== =========
1.70 (worst baseline at 1 %, old)      98.4   168   0.99 %     262.2
6.35 (imaging-weighted 1 %, now)       59.5   100   0.64 %     259.3
====================================== ====== ===== ========== =========

(A second run, next to a light job, took 69.2 s / 106 CPU s. tclean on the
same field in the same run: 614.5 s / 818 CPU s, median flux error 1.00 %,
residual rms 253.5 uJy; speedup 8.9, CPU 7.7.)

Each gridding or prediction pass costs ~1.6 s plus ~0.12 s per million
visibilities (11.4 s for all 84 million, 6.0 s for 38 million); a standard
run makes 7 passes (PSF, then per major cycle a prediction and a gridding).

The minor loop is the cost where a bright source sits on the beam's flank:
its apparent flux changes along the drift and across the band, and the
residual around it holds artefacts at ~0.1 % of it that the unmasked stage
cleans down to 5 sigma: tens of thousands of minor iterations, a
single-threaded loop that can cost more than all the gridding. On the
calibrator's neighbour group of a full-scale night (``benchmarks/night.py
--seed 1``, ``full``: the 10 Jy calibrator at beam response 0.90, 6.5 Jy
apparent, with the spectral fit), the same WSClean command alone on a quiet
machine:

============================== ====== ====== ============== ============== =========== ===============
standard tier on that group    wall   CPU    deconvolution  how it stopped residual    sources (11 >
                               (s)    (s)    (s)                           MAD (uJy)   5 mJy) vs now
============================== ====== ====== ============== ============== =========== ===============
gain 0.1 (now)                 230    295    145            50000-iteration 660         --
                                                            limit (a warn)
gain 0.2                       157    225    76             threshold      661         within 0.5 sigma
gain 0.1, ``-local-rms``       94     168    9              threshold      775         -1 to -3 sigma
============================== ====== ====== ============== ============== =========== ===============

Neither was taken. Gain 0.2 looked free on that group, but in the night's
matrix the next group (the calibrator at response 0.37) diverged with it:
most negative pixel -0.338 Jy/beam against a peak of 0.193 Jy/beam, where
gain 0.1 converges (peak 1.67 Jy/beam); the divergence check caught it and
the safe run (:func:`contimg.imaging.run.safe_tier`, which also caps the
gain at 0.1) imaged it again, costing more than the gain saved.
``-local-rms`` leaves the calibrator's own first-cycle residual uncleaned
(near it the window's rms is that residual): a -0.34 Jy hole, the image's
most negative pixel -0.22 Jy instead of -0.04 Jy.

What was taken instead: the bright source is subtracted from the
visibilities by its exact model (beam along the drift and across the band)
before WSClean runs and restored in the image afterwards
(:mod:`contimg.imaging.subtract`, ``imaging.subtract_dynamic_range``), so
the minor loop never sees its sidelobes; the tier's parameters are unchanged.

WSClean ``-nmiter`` bounds the major cycles; tclean's equivalent is set
through ``cycleniter`` = niter / major cycles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from contimg.errors import ConfigError

__all__ = ["TIERS", "TierParameters", "tier_parameters"]


@dataclass(frozen=True)
class TierParameters:
    """Deconvolution parameters of one quality tier (see the module table)."""

    name: str
    niter: int
    major_cycles: int
    mgain: float
    auto_threshold_sigma: float
    auto_mask_sigma: float | None
    max_smearing_loss: float | None = None
    """Baseline-dependent time averaging (WSClean only) may lower a point source's peak by at most this
    fraction at the edge of the field (the ``pb_limit`` radius); None: no averaging."""
    wgridder_accuracy: float = 1e-4
    """Requested accuracy of WSClean's w-gridder (Arras et al. 2021); 1e-4 is WSClean's default."""
    gain: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


TIERS: dict[str, TierParameters] = {
    "quicklook": TierParameters("quicklook", niter=2000, major_cycles=2, mgain=0.8,
                                auto_threshold_sigma=5.0, auto_mask_sigma=None, max_smearing_loss=0.02,
                                wgridder_accuracy=1e-3),
    "standard": TierParameters("standard", niter=50000, major_cycles=6, mgain=0.95,
                               auto_threshold_sigma=3.0, auto_mask_sigma=5.0, max_smearing_loss=0.01,
                               wgridder_accuracy=1e-3),
    "deep": TierParameters("deep", niter=200000, major_cycles=12, mgain=0.7,
                           auto_threshold_sigma=1.0, auto_mask_sigma=3.0, wgridder_accuracy=1e-5),
}


def tier_parameters(name: str) -> TierParameters:
    """The parameters of tier ``name``.

    Raises
    ------
    ConfigError
        If the tier is unknown.
    """
    try:
        return TIERS[name]
    except KeyError:
        raise ConfigError(f"unknown imaging tier {name!r}; known: {', '.join(TIERS)}") from None
