"""A Celery app for fault tests: the production app plus injected faults.

Started as ``celery -A fault_app worker`` by the tests (never imported by the
package). Faults, each chosen by an environment variable:

``CONTIMG_TEST_HANG_SUBBAND=NN`` (with ``CONTIMG_TEST_MARKER``)
    the first attempt at writing subband NN leaves half a part in the staging
    directory (garbage under the part's final name), records its pid in the
    marker file and hangs in the middle of the write, so that the test can
    SIGKILL that worker child (or its whole node); the redelivered attempt
    runs the real write, which must replace the garbage.
``CONTIMG_TEST_SLOW_PART_S=S``
    every subband write takes S seconds longer (a slow stage).
``CONTIMG_TEST_PAUSE_AFTER_COMBINE=S`` (with ``CONTIMG_TEST_MARKER``)
    the first combine to finish writes the marker and waits S seconds before
    its task returns and Celery publishes the chain's next step (the test stops
    Redis meanwhile).
"""

from __future__ import annotations

import os
import time

import contimg.conversion.subband as subband
import contimg.pipeline.convert as pipeline_convert
from workers.app import app  # noqa: F401 - the app Celery loads

_HANG = os.environ.get("CONTIMG_TEST_HANG_SUBBAND")
_MARKER = os.environ.get("CONTIMG_TEST_MARKER")
_SLOW = float(os.environ.get("CONTIMG_TEST_SLOW_PART_S", "0") or 0)
_PAUSE = float(os.environ.get("CONTIMG_TEST_PAUSE_AFTER_COMBINE", "0") or 0)
_real_write = subband.write_subband_part
_real_combine = pipeline_convert.combine


def _first(marker: str | None) -> bool:
    """True for the first process to get here (the marker file did not exist); records its pid."""
    if not marker:
        return False
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _write_with_fault(plan, subband_file, staging_dir):
    if _SLOW:
        time.sleep(_SLOW)
    if _HANG and str(subband_file).endswith(f"_sb{int(_HANG):02d}.hdf5"):
        part = subband.part_path(subband.ConversionPlan.from_dict(plan) if isinstance(plan, dict) else plan,
                                 int(_HANG), staging_dir)
        part.parent.mkdir(parents=True, exist_ok=True)
        if _first(_MARKER):
            part.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)  # half a file
            time.sleep(300)
    return _real_write(plan, subband_file, staging_dir)


def _combine_with_pause(*args, **kwargs):
    result = _real_combine(*args, **kwargs)
    if _PAUSE and _first(_MARKER):
        time.sleep(_PAUSE)
    return result


subband.write_subband_part = _write_with_fault
pipeline_convert.combine = _combine_with_pause
