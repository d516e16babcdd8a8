"""mosaics: a night's primary-beam-weighted linear mosaic, its tiles and inputs (contimg.imaging.mosaic).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mosaics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('night', sa.Date(), nullable=False),
    sa.Column('start_mjd', sa.Double(), nullable=False),
    sa.Column('end_mjd', sa.Double(), nullable=False),
    sa.Column('manifest', sa.String(length=1024), nullable=False),
    sa.Column('n_inputs', sa.Integer(), nullable=False),
    sa.Column('n_tiles', sa.Integer(), nullable=False),
    sa.Column('image_ids', sa.JSON(), nullable=False),
    sa.Column('n_excluded', sa.Integer(), nullable=False),
    sa.Column('ra_start_deg', sa.Double(), nullable=True),
    sa.Column('ra_end_deg', sa.Double(), nullable=True),
    sa.Column('dec_min_deg', sa.Double(), nullable=True),
    sa.Column('dec_max_deg', sa.Double(), nullable=True),
    sa.Column('beam_major_arcsec', sa.Double(), nullable=True),
    sa.Column('beam_minor_arcsec', sa.Double(), nullable=True),
    sa.Column('beam_pa_deg', sa.Double(), nullable=True),
    sa.Column('freq_hz', sa.Double(), nullable=True),
    sa.Column('min_noise_jy', sa.Double(), nullable=True),
    sa.Column('median_noise_jy', sa.Double(), nullable=True),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('tiles', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mosaics')),
    sa.UniqueConstraint('night', name=op.f('uq_mosaics_night'))
    )


def downgrade() -> None:
    op.drop_table('mosaics')
