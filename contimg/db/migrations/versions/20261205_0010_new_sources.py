"""new_sources, new_source_detections: new-source candidates and the components that detected them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'new_sources',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('ra_deg', sa.Double(), nullable=False),
        sa.Column('dec_deg', sa.Double(), nullable=False),
        sa.Column('status', sa.Enum('new', 'confirmed', 'rejected', 'ended', name='new_source_status',
                                    native_enum=False, create_constraint=True, length=16), nullable=False),
        sa.Column('first_detected_mjd', sa.Double(), nullable=False),
        sa.Column('last_detected_mjd', sa.Double(), nullable=False),
        sa.Column('n_detections', sa.Integer(), nullable=False),
        sa.Column('peak_flux_jy', sa.Double(), nullable=False),
        sa.Column('snr', sa.Double(), nullable=False),
        sa.Column('significance', sa.Double(), nullable=False),
        sa.Column('n_prior_epochs', sa.Integer(), nullable=False),
        sa.Column('prior_limit_jy', sa.Double(), nullable=True),
        sa.Column('first_image_id', sa.Integer(), nullable=True),
        sa.Column('prior_image_ids', sa.JSON(), nullable=True),
        sa.Column('cutouts', sa.String(length=1024), nullable=True),
        sa.Column('notes', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['first_image_id'], ['images.id'], name=op.f('fk_new_sources_first_image_id_images'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_new_sources')),
        sa.UniqueConstraint('name', name=op.f('uq_new_sources_name')),
    )
    op.create_index(op.f('ix_new_sources_dec_deg_ra_deg'), 'new_sources', ['dec_deg', 'ra_deg'], unique=False)
    op.create_index(op.f('ix_new_sources_status'), 'new_sources', ['status'], unique=False)
    op.create_table(
        'new_source_detections',
        sa.Column('id', _BIGINT, nullable=False),
        sa.Column('new_source_id', sa.Integer(), nullable=False),
        sa.Column('component_id', _BIGINT, nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('epoch_mjd', sa.Double(), nullable=False),
        sa.Column('ra_deg', sa.Double(), nullable=False),
        sa.Column('dec_deg', sa.Double(), nullable=False),
        sa.Column('flux_jy', sa.Double(), nullable=False),
        sa.Column('flux_err_jy', sa.Double(), nullable=True),
        sa.Column('snr', sa.Double(), nullable=False),
        sa.Column('significance', sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(['component_id'], ['components.id'],
                                name=op.f('fk_new_source_detections_component_id_components'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_new_source_detections_image_id_images'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['new_source_id'], ['new_sources.id'],
                                name=op.f('fk_new_source_detections_new_source_id_new_sources'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_new_source_detections')),
        sa.UniqueConstraint('component_id', name=op.f('uq_new_source_detections_component_id')),
    )
    op.create_index(op.f('ix_new_source_detections_image_id'), 'new_source_detections', ['image_id'], unique=False)
    op.create_index(op.f('ix_new_source_detections_new_source_id'), 'new_source_detections', ['new_source_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_new_source_detections_new_source_id'), table_name='new_source_detections')
    op.drop_index(op.f('ix_new_source_detections_image_id'), table_name='new_source_detections')
    op.drop_table('new_source_detections')
    op.drop_index(op.f('ix_new_sources_status'), table_name='new_sources')
    op.drop_index(op.f('ix_new_sources_dec_deg_ra_deg'), table_name='new_sources')
    op.drop_table('new_sources')
