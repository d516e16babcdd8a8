"""The exception hierarchy of contimg.

Every error the pipeline raises on purpose derives from :class:`ContimgError`.
It is split in two branches that decide what the cluster does with a failure:

* :class:`TransientError` -- the world may be different next time (a database
  lock, a full disk that is being cleaned, a lost connection). Celery tasks
  retry these with exponential backoff.
* :class:`PermanentError` -- the input is wrong and retrying cannot help (a
  corrupt file, a missing subband, a failed validation). The group is marked
  ``failed`` with the message, which always names the file or group concerned.

A third branch, :class:`DeferredError`, is neither: the work cannot be done *yet* (no calibration
set is valid for a science group until its calibrator's transit is solved). The calibration stage
waits for it (``calibration.wait_for_solution_s``; the serial path runs the group after the others)
and fails the group with the reason only when the wait is over.

How an external tool's failure is classified (killed, out of space, table lock: transient; bad
input: permanent) is in :mod:`contimg.tools`.
"""

from __future__ import annotations


class ContimgError(Exception):
    """Base class of every error contimg raises on purpose."""


class TransientError(ContimgError):
    """A failure that may succeed when retried (locks, busy disks, lost connections)."""


class PermanentError(ContimgError):
    """A failure that retrying cannot fix (bad input, failed validation)."""


class DeferredError(ContimgError):
    """Not ready yet: what the work needs will exist later (a calibration set for a science group)."""


class ConfigError(PermanentError):
    """Invalid settings; the message names the variable and the accepted values."""


class InputFileError(PermanentError):
    """An input file is unreadable, truncated or inconsistent with its group."""


class ValidationError(PermanentError):
    """A product failed its validation checks."""


class StagingFullError(TransientError):
    """The staging directory ran out of space while writing."""


class InvalidTransitionError(PermanentError):
    """A group state change that the state machine does not allow."""


class ExternalToolError(PermanentError):
    """An external program (WSClean, a CASA task) failed."""


class NotFoundError(PermanentError):
    """A database record (a group, an MS, a source ...) that does not exist; the message names it."""


class SourceFindingError(PermanentError):
    """The blind source finder failed on an image; the message names the image and the finder's own error."""
