"""calibration_sets.qa: JSON with the solve's QA (reference antenna, solution statistics, plot paths).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('calibration_sets') as batch:
        batch.add_column(sa.Column('qa', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calibration_sets') as batch:
        batch.drop_column('qa')
