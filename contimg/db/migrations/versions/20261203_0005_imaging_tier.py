"""observation_groups.imaging_tier: the imaging tier a reprocessing asked for (None: the settings' tier).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 19:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('observation_groups') as batch:
        batch.add_column(sa.Column('imaging_tier', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('observation_groups') as batch:
        batch.drop_column('imaging_tier')
