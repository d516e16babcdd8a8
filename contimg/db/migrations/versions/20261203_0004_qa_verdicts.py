"""QA verdicts: images.qa_verdict / images.qa (the image gate), calibration_sets.qa_verdict (the calibration gate).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('qa_verdict', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('qa', sa.JSON(), nullable=True))
        batch.create_index('ix_images_qa_verdict', ['qa_verdict'], unique=False)
    with op.batch_alter_table('calibration_sets') as batch:
        batch.add_column(sa.Column('qa_verdict', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calibration_sets') as batch:
        batch.drop_column('qa_verdict')
    with op.batch_alter_table('images') as batch:
        batch.drop_index('ix_images_qa_verdict')
        batch.drop_column('qa')
        batch.drop_column('qa_verdict')
