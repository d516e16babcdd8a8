"""observation_groups.worker / .node: who holds a group's run (the stale-run sweep asks whether they live).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('observation_groups') as batch:
        batch.add_column(sa.Column('worker', sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column('node', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('observation_groups') as batch:
        batch.drop_column('node')
        batch.drop_column('worker')
