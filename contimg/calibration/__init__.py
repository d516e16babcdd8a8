"""Calibration: catalogues, the calibrator in the beam, our own MODEL_DATA, CASA solves, a registry, applycal.

One module per concern, in the order data flows:

* :mod:`.catalog` -- calibrator and source catalogue files (CSV, simulator truth) as source records;
* (what an MS says about itself -- times, antennas, pointing -- is :class:`contimg.msmodel.MsModel`, read once);
* :mod:`.select` -- catalogue sources near the pointing track; the calibrator in the beam;
* :mod:`.model` -- MODEL_DATA from point sources (Airy beam per time and channel);
* :mod:`.solve` -- K/B/G solves with casatasks on a time-averaged copy, solution-count checks;
* :mod:`.bandpass` -- the bandpass solve split over processes by channel range;
* :mod:`.casatask` -- running a casatasks task with our error handling;
* :mod:`.registry` -- calibration sets with validity windows, lookup;
* :mod:`.apply` -- applycal (``calflagstrict``) into CORRECTED_DATA;
* :mod:`.qa` -- PNG plots of the solutions;
* :mod:`.gate` -- the calibration gate (flagged solutions, SNR, scatter, model agreement);
* :mod:`.calibrate` -- :func:`~.calibrate.solve_and_judge`: model, solve, judge, plot.

The package never imports Celery and never touches the database: the stage
(:func:`contimg.pipeline.calibrate.calibrate_ms`) reads the catalogue and the
registry, records the MS and registers the sets. casatools/casatasks are
imported lazily through :mod:`contimg.casa_env`.
"""

from contimg.calibration.calibrate import CalibrationOutcome, CalibrationQaFailed, solve_and_judge
from contimg.calibration.registry import NoValidCalibration
from contimg.calibration.solve import SolveError

__all__ = ["CalibrationOutcome", "CalibrationQaFailed", "NoValidCalibration", "SolveError", "solve_and_judge"]
