"""components: what the blind source finder found in each image, with its catalogue match.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'components',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('ra_deg', sa.Double(), nullable=False),
        sa.Column('dec_deg', sa.Double(), nullable=False),
        sa.Column('ra_err_arcsec', sa.Double(), nullable=True),
        sa.Column('dec_err_arcsec', sa.Double(), nullable=True),
        sa.Column('peak_flux_jy', sa.Double(), nullable=False),
        sa.Column('peak_flux_err_jy', sa.Double(), nullable=True),
        sa.Column('int_flux_jy', sa.Double(), nullable=True),
        sa.Column('int_flux_err_jy', sa.Double(), nullable=True),
        sa.Column('major_arcsec', sa.Double(), nullable=True),
        sa.Column('minor_arcsec', sa.Double(), nullable=True),
        sa.Column('pa_deg', sa.Double(), nullable=True),
        sa.Column('local_rms_jy', sa.Double(), nullable=True),
        sa.Column('beam_response', sa.Double(), nullable=True),
        sa.Column('flags', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=True),
        sa.Column('separation_arcsec', sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_components_image_id_images'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_components_source_id_sources'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_components')),
    )
    op.create_index(op.f('ix_components_dec_deg_ra_deg'), 'components', ['dec_deg', 'ra_deg'], unique=False)
    op.create_index(op.f('ix_components_image_id'), 'components', ['image_id'], unique=False)
    op.create_index(op.f('ix_components_source_id'), 'components', ['source_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_components_source_id'), table_name='components')
    op.drop_index(op.f('ix_components_image_id'), table_name='components')
    op.drop_index(op.f('ix_components_dec_deg_ra_deg'), table_name='components')
    op.drop_table('components')
