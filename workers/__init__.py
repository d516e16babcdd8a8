"""The Celery side of contimg: the app, routing, thin tasks and the per-group canvas.

Nothing here holds pipeline logic: every task turns ids and paths into a call
into :mod:`contimg.pipeline` (which knows nothing of Celery) and returns
JSON-serialisable results.
"""
