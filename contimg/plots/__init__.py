"""Pictures an astronomer can read: every figure the pipeline draws, from arrays and FITS files (no database).

* :mod:`contimg.plots.sky` -- image thumbnails on RA/Dec axes (colour bar in
  mJy/beam, restoring beam, catalogue circles) and per-source cut-out strips
  over epochs on one colour scale;
* :mod:`contimg.plots.calibration` -- bandpass small multiples (one
  amplitude/phase panel pair per antenna, phase unwrapped along frequency,
  flagged channels as gaps) and gain/delay plots labelled by antenna;
* :mod:`contimg.plots.lightcurve` -- a source's light curve with error bars,
  upper limits as downward arrows, the catalogue flux and its statistics;
* :mod:`contimg.plots.night` -- a night's images: noise, sources measured and
  flux-scale correction against time, QA warnings and failures marked.

Conventions: each ``*_figure`` function returns a :class:`matplotlib.figure.Figure`
(drawn on the Agg canvas; no pyplot, so no global state and no display needed),
which :func:`save_png` writes atomically; the ``write_*`` functions do both.
Stage libraries call these (:func:`contimg.imaging.qa.write_thumbnail`,
:func:`contimg.calibration.qa.plot_solutions`); database queries stay with the
callers in :mod:`contimg.pipeline` and :mod:`contimg.cli`.
"""

from contimg.plots.common import new_figure, save_png

__all__ = ["new_figure", "save_png"]
