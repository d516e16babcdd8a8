"""Initial schema: groups, subband files, stage timings, MSs, calibration, images, sources,
photometry, variability statistics and ESE candidates.

Generated from contimg/db/models.py with alembic autogenerate and reviewed by hand
(types written as plain SQLAlchemy types: UTCDateTime is DateTime(timezone=True)).

Revision ID: 0001
Revises:
Create Date: 2026-11-24 01:17:36.726355
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('calibration_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('calibrator_name', sa.String(length=64), nullable=True),
    sa.Column('solve_mjd', sa.Double(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calibration_sets')),
    sa.UniqueConstraint('name', name=op.f('uq_calibration_sets_name'))
    )
    op.create_table('observation_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_key', sa.String(length=32), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.Enum('collecting', 'pending', 'in_progress', 'completed', 'failed', name='group_state', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('nsubbands', sa.Integer(), nullable=False),
    sa.Column('current_stage', sa.String(length=32), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('retry_count', sa.Integer(), nullable=False),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('task_id', sa.String(length=255), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('calibrator_name', sa.String(length=64), nullable=True),
    sa.Column('calibrator_beam_response', sa.Double(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_observation_groups')),
    sa.UniqueConstraint('group_key', name=op.f('uq_observation_groups_group_key'))
    )
    op.create_index(op.f('ix_observation_groups_state'), 'observation_groups', ['state'], unique=False)
    op.create_index(op.f('ix_observation_groups_task_id'), 'observation_groups', ['task_id'], unique=False)
    op.create_index(op.f('ix_observation_groups_timestamp'), 'observation_groups', ['timestamp'], unique=False)

    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('ra_deg', sa.Double(), nullable=False),
    sa.Column('dec_deg', sa.Double(), nullable=False),
    sa.Column('flux_jy', sa.Double(), nullable=True),
    sa.Column('flux_err_jy', sa.Double(), nullable=True),
    sa.Column('spectral_index', sa.Double(), nullable=True),
    sa.Column('resolved', sa.Boolean(), nullable=False),
    sa.Column('confused', sa.Boolean(), nullable=False),
    sa.Column('is_calibrator', sa.Boolean(), nullable=False),
    sa.Column('quality', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sources')),
    sa.UniqueConstraint('name', name=op.f('uq_sources_name'))
    )
    op.create_index(op.f('ix_sources_dec_deg_ra_deg'), 'sources', ['dec_deg', 'ra_deg'], unique=False)
    op.create_index(op.f('ix_sources_is_calibrator'), 'sources', ['is_calibrator'], unique=False)

    op.create_table('ese_candidates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('new', 'confirmed', 'rejected', 'ended', name='candidate_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('first_detected_mjd', sa.Double(), nullable=False),
    sa.Column('last_detected_mjd', sa.Double(), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('significance', sa.Double(), nullable=False),
    sa.Column('template', sa.JSON(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_ese_candidates_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ese_candidates'))
    )
    op.create_index(op.f('ix_ese_candidates_source_id'), 'ese_candidates', ['source_id'], unique=False)
    op.create_index('uq_ese_candidates_open_source', 'ese_candidates', ['source_id'], unique=True, sqlite_where=sa.text("status IN ('new', 'confirmed')"), postgresql_where=sa.text("status IN ('new', 'confirmed')"))

    op.create_table('measurement_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('start_mjd', sa.Double(), nullable=True),
    sa.Column('end_mjd', sa.Double(), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('calibration_set_id', sa.Integer(), nullable=True),
    sa.Column('calibrator_name', sa.String(length=64), nullable=True),
    sa.Column('calibrator_beam_response', sa.Double(), nullable=True),
    sa.Column('validation', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['calibration_set_id'], ['calibration_sets.id'], name=op.f('fk_measurement_sets_calibration_set_id_calibration_sets'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['group_id'], ['observation_groups.id'], name=op.f('fk_measurement_sets_group_id_observation_groups'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_measurement_sets')),
    sa.UniqueConstraint('path', name=op.f('uq_measurement_sets_path'))
    )
    op.create_index(op.f('ix_measurement_sets_calibration_set_id'), 'measurement_sets', ['calibration_set_id'], unique=False)
    op.create_index(op.f('ix_measurement_sets_group_id'), 'measurement_sets', ['group_id'], unique=False)

    op.create_table('stage_timings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['group_id'], ['observation_groups.id'], name=op.f('fk_stage_timings_group_id_observation_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_timings')),
    sa.UniqueConstraint('group_id', 'stage', 'attempt', name=op.f('uq_stage_timings_group_id_stage_attempt'))
    )
    op.create_index(op.f('ix_stage_timings_group_id'), 'stage_timings', ['group_id'], unique=False)

    op.create_table('subband_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('subband', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('file_timestamp', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discovered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('subband >= 0 AND subband < 16', name=op.f('ck_subband_files_subband_range')),
    sa.ForeignKeyConstraint(['group_id'], ['observation_groups.id'], name=op.f('fk_subband_files_group_id_observation_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subband_files')),
    sa.UniqueConstraint('group_id', 'subband', name=op.f('uq_subband_files_group_id_subband')),
    sa.UniqueConstraint('path', name=op.f('uq_subband_files_path'))
    )
    op.create_index(op.f('ix_subband_files_group_id'), 'subband_files', ['group_id'], unique=False)

    op.create_table('variability_stats',
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('n_epochs', sa.Integer(), nullable=False),
    sa.Column('weighted_mean_jy', sa.Double(), nullable=True),
    sa.Column('chi2_nu', sa.Double(), nullable=True),
    sa.Column('eta', sa.Double(), nullable=True),
    sa.Column('v', sa.Double(), nullable=True),
    sa.Column('modulation_index', sa.Double(), nullable=True),
    sa.Column('max_vs', sa.Double(), nullable=True),
    sa.Column('max_m', sa.Double(), nullable=True),
    sa.Column('ese_score', sa.Double(), nullable=True),
    sa.Column('ese_significance', sa.Double(), nullable=True),
    sa.Column('last_photometry_id', sa.BigInteger(), nullable=True),
    sa.Column('last_epoch_mjd', sa.Double(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_variability_stats_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_variability_stats'))
    )
    op.create_table('calibration_tables',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('calibration_set_id', sa.Integer(), nullable=False),
    sa.Column('table_type', sa.Enum('K', 'B', 'G', name='cal_table_type', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('apply_order', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('valid_start_mjd', sa.Double(), nullable=False),
    sa.Column('valid_end_mjd', sa.Double(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('source_ms_id', sa.Integer(), nullable=True),
    sa.Column('calibrator_name', sa.String(length=64), nullable=True),
    sa.Column('flagged_fraction', sa.Double(), nullable=True),
    sa.Column('n_solutions', sa.Integer(), nullable=True),
    sa.Column('n_expected', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('flagged_fraction IS NULL OR (flagged_fraction >= 0 AND flagged_fraction <= 1)', name=op.f('ck_calibration_tables_flagged_fraction_range')),
    sa.CheckConstraint('valid_end_mjd >= valid_start_mjd', name=op.f('ck_calibration_tables_validity_window')),
    sa.ForeignKeyConstraint(['calibration_set_id'], ['calibration_sets.id'], name=op.f('fk_calibration_tables_calibration_set_id_calibration_sets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_ms_id'], ['measurement_sets.id'], name=op.f('fk_calibration_tables_source_ms_id_measurement_sets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calibration_tables')),
    sa.UniqueConstraint('calibration_set_id', 'apply_order', name=op.f('uq_calibration_tables_calibration_set_id_apply_order')),
    sa.UniqueConstraint('calibration_set_id', 'table_type', name=op.f('uq_calibration_tables_calibration_set_id_table_type')),
    sa.UniqueConstraint('path', name=op.f('uq_calibration_tables_path'))
    )
    op.create_index(op.f('ix_calibration_tables_calibration_set_id'), 'calibration_tables', ['calibration_set_id'], unique=False)
    op.create_index('ix_calibration_tables_lookup', 'calibration_tables', ['table_type', 'active', 'valid_start_mjd'], unique=False)

    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('ms_id', sa.Integer(), nullable=True),
    sa.Column('mid_mjd', sa.Double(), nullable=True),
    sa.Column('ra_deg', sa.Double(), nullable=True),
    sa.Column('dec_deg', sa.Double(), nullable=True),
    sa.Column('beam_major_arcsec', sa.Double(), nullable=True),
    sa.Column('beam_minor_arcsec', sa.Double(), nullable=True),
    sa.Column('beam_pa_deg', sa.Double(), nullable=True),
    sa.Column('rms_jy', sa.Double(), nullable=True),
    sa.Column('peak_jy', sa.Double(), nullable=True),
    sa.Column('dynamic_range', sa.Double(), nullable=True),
    sa.Column('pb_corrected', sa.Boolean(), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=True),
    sa.Column('backend', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ms_id'], ['measurement_sets.id'], name=op.f('fk_images_ms_id_measurement_sets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('path', name=op.f('uq_images_path'))
    )
    op.create_index(op.f('ix_images_mid_mjd'), 'images', ['mid_mjd'], unique=False)
    op.create_index(op.f('ix_images_ms_id'), 'images', ['ms_id'], unique=False)

    op.create_table('photometry',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('epoch_mjd', sa.Double(), nullable=False),
    sa.Column('flux_jy', sa.Double(), nullable=False),
    sa.Column('flux_err_jy', sa.Double(), nullable=False),
    sa.Column('norm_flux_jy', sa.Double(), nullable=True),
    sa.Column('norm_flux_err_jy', sa.Double(), nullable=True),
    sa.Column('upper_limit', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_photometry_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_photometry_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photometry')),
    sa.UniqueConstraint('source_id', 'image_id', name=op.f('uq_photometry_source_id_image_id'))
    )
    op.create_index(op.f('ix_photometry_image_id'), 'photometry', ['image_id'], unique=False)
    op.create_index(op.f('ix_photometry_source_id_epoch_mjd'), 'photometry', ['source_id', 'epoch_mjd'], unique=False)



def downgrade() -> None:
    op.drop_index(op.f('ix_photometry_source_id_epoch_mjd'), table_name='photometry')
    op.drop_index(op.f('ix_photometry_image_id'), table_name='photometry')

    op.drop_table('photometry')
    op.drop_index(op.f('ix_images_ms_id'), table_name='images')
    op.drop_index(op.f('ix_images_mid_mjd'), table_name='images')

    op.drop_table('images')
    op.drop_index('ix_calibration_tables_lookup', table_name='calibration_tables')
    op.drop_index(op.f('ix_calibration_tables_calibration_set_id'), table_name='calibration_tables')

    op.drop_table('calibration_tables')
    op.drop_table('variability_stats')
    op.drop_index(op.f('ix_subband_files_group_id'), table_name='subband_files')

    op.drop_table('subband_files')
    op.drop_index(op.f('ix_stage_timings_group_id'), table_name='stage_timings')

    op.drop_table('stage_timings')
    op.drop_index(op.f('ix_measurement_sets_group_id'), table_name='measurement_sets')
    op.drop_index(op.f('ix_measurement_sets_calibration_set_id'), table_name='measurement_sets')

    op.drop_table('measurement_sets')
    op.drop_index('uq_ese_candidates_open_source', table_name='ese_candidates', sqlite_where=sa.text("status IN ('new', 'confirmed')"), postgresql_where=sa.text("status IN ('new', 'confirmed')"))
    op.drop_index(op.f('ix_ese_candidates_source_id'), table_name='ese_candidates')

    op.drop_table('ese_candidates')
    op.drop_index(op.f('ix_sources_is_calibrator'), table_name='sources')
    op.drop_index(op.f('ix_sources_dec_deg_ra_deg'), table_name='sources')

    op.drop_table('sources')
    op.drop_index(op.f('ix_observation_groups_timestamp'), table_name='observation_groups')
    op.drop_index(op.f('ix_observation_groups_task_id'), table_name='observation_groups')
    op.drop_index(op.f('ix_observation_groups_state'), table_name='observation_groups')

    op.drop_table('observation_groups')
    op.drop_table('calibration_sets')
