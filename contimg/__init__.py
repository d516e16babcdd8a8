"""contimg: the DSA-110 continuum imaging pipeline.

The library in this package knows nothing of Celery: every stage is a plain
function or small class that the Celery tasks in ``workers/`` wrap thinly, and
that tests, notebooks and a single machine can call directly.
"""

__version__ = "0.1.0"
