"""A Celery app for fault tests: the production app plus one injected fault.

Started as ``celery -A fault_app worker`` by the tests (never imported by the
package). When ``CONTIMG_TEST_HANG_SUBBAND=NN`` is set, the first attempt at
writing subband NN leaves half a part in the staging directory (garbage under
the part's final name), records its pid in ``CONTIMG_TEST_MARKER`` and hangs
in the middle of the write, so that the test can SIGKILL that worker child;
the redelivered attempt runs the real write, which must replace the garbage.
"""

from __future__ import annotations

import os
import time

import contimg.conversion.subband as subband
from workers.app import app  # noqa: F401 - the app Celery loads

_HANG = os.environ.get("CONTIMG_TEST_HANG_SUBBAND")
_MARKER = os.environ.get("CONTIMG_TEST_MARKER")
_real_write = subband.write_subband_part


def _write_with_fault(plan, subband_file, staging_dir):
    if _HANG and _MARKER and str(subband_file).endswith(f"_sb{int(_HANG):02d}.hdf5"):
        try:
            fd = os.open(_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            fd = None  # the redelivered attempt: write normally
        if fd is not None:
            part = subband.part_path(subband.ConversionPlan.from_dict(plan) if isinstance(plan, dict) else plan,
                                     int(_HANG), staging_dir)
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)  # half a file
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            time.sleep(300)
    return _real_write(plan, subband_file, staging_dir)


subband.write_subband_part = _write_with_fault
