"""Variability science: per-source statistics and ESE detection, on arrays (no database).

* :mod:`contimg.variability.metrics` -- chi2_nu, eta, V, debiased modulation
  index, max Vs / m over epoch pairs, vectorised over long-format light curves;
* :mod:`contimg.variability.ese` -- extreme-scattering-event search (matched
  dip templates under a fitted red-noise model, calibrated significance);
* :mod:`contimg.variability.esemodel` -- the ESE model (profile and unit template), shared with
  the simulator;
* :mod:`contimg.variability.kalman` -- the compiled O(N) likelihood kernel.

The nightly job that reads light curves from the database, scores them with
these and writes statistics and candidates is :mod:`contimg.pipeline.nightly`.
"""
