"""The producer: finding subband files, grouping them and enqueuing complete groups.

Runs without Celery; publishing is an ``enqueue(group_key, run_token, from_stage)``
callable. See :class:`contimg.ingest.producer.Producer`.
"""

from contimg.ingest.producer import Producer, StepReport
from contimg.db.groups import Outcome, promote_due_groups, register_file

__all__ = ["Outcome", "Producer", "StepReport", "promote_due_groups", "register_file"]
