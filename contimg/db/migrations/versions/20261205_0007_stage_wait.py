"""stage_timings: queue wait apart from work (queued_at, paused_at, wait_seconds).

Before this revision a stage's ``seconds`` ran from when its first task started to its end, so a conversion
whose subband writes queued behind other groups' counted the queue as conversion time. Rows recorded before
this revision keep their ``seconds`` and get no wait (unknown).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 07:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('stage_timings') as batch:
        batch.add_column(sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('wait_seconds', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stage_timings') as batch:
        batch.drop_column('wait_seconds')
        batch.drop_column('paused_at')
        batch.drop_column('queued_at')
