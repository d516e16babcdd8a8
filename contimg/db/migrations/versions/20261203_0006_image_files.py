"""images.files: the product set's files by kind, recorded with the image (the manifest photometry reads).

Rows recorded before this revision get the files image_ms names beside them (``<name>.image.fits``,
``<name>.image.pbcor.fits``, ``<name>.pb.fits`` ...): from here on nothing parses file names.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = {"image": ".image.fits", "pbcor": ".image.pbcor.fits", "pb": ".pb.fits", "residual": ".residual.fits",
          "model": ".model.fits", "psf": ".psf.fits", "thumbnail": ".png"}
"""The names contimg.imaging.image_ms gave its products up to this revision."""


def _files(path: str) -> dict[str, str] | None:
    for suffix in (".image.pbcor.fits", ".image.fits"):
        if path.endswith(suffix):
            base = path[: -len(suffix)]
            return {kind: base + ending for kind, ending in _KINDS.items()}
    return None


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.add_column(sa.Column('files', sa.JSON(), nullable=True))
    images = sa.table('images', sa.column('id', sa.Integer), sa.column('path', sa.Text), sa.column('files', sa.JSON))
    bind = op.get_bind()
    for row_id, path in bind.execute(sa.select(images.c.id, images.c.path)).all():
        files = _files(path)
        if files is not None:
            bind.execute(images.update().where(images.c.id == row_id).values(files=files))


def downgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.drop_column('files')
