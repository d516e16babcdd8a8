"""Variability science: per-source statistics, ESE detection, the nightly scoring job.

* :mod:`contimg.variability.metrics` -- chi2_nu, eta, V, debiased modulation
  index, max Vs / m over epoch pairs, vectorised over long-format light curves;
* :mod:`contimg.variability.ese` -- extreme-scattering-event search (matched
  dip templates under a fitted red-noise model, calibrated significance);
* :mod:`contimg.variability.esemodel` -- the ESE model (profile and unit template), shared with
  the simulator;
* :mod:`contimg.variability.kalman` -- the compiled O(N) likelihood kernel;
* :mod:`contimg.variability.nightly` -- :func:`score_sources`, the bulk job
  that reads photometry from the database and writes statistics and candidates.
"""
