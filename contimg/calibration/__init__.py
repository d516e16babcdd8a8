"""Calibration: catalogues, the calibrator in the beam, our own MODEL_DATA, CASA solves, a registry, applycal.

One module per concern, in the order data flows:

* :mod:`.catalog` -- calibrator and source catalogues into the database (CSV, simulator truth);
* :mod:`.msmeta` -- what a converted MS says about itself (times, antennas, pointing);
* :mod:`.select` -- catalogue sources near the pointing track; the calibrator in the beam;
* :mod:`.model` -- MODEL_DATA from point sources (Airy beam per time and channel);
* :mod:`.solve` -- K/B/G solves with casatasks on a time-averaged copy, solution-count checks;
* :mod:`.bandpass` -- the bandpass solve split over processes by channel range;
* :mod:`.casatask` -- running a casatasks task with our error handling;
* :mod:`.registry` -- calibration sets with validity windows, lookup;
* :mod:`.apply` -- applycal (``calflagstrict``) into CORRECTED_DATA;
* :mod:`.qa` -- PNG plots of the solutions;
* :mod:`.calibrate` -- :func:`calibrate_ms`, the stage's single entry point.

The package never imports Celery; casatools/casatasks are imported lazily
through :mod:`contimg.casa_env`.
"""

from contimg.calibration.calibrate import CalibrationOutcome, calibrate_ms
from contimg.calibration.registry import NoValidCalibration
from contimg.calibration.solve import SolveError

__all__ = ["CalibrationOutcome", "NoValidCalibration", "SolveError", "calibrate_ms"]
