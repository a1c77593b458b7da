"""connections.linked_at: when the grant was last (re)linked

A provider notification about an event from before the latest link is about
an earlier grant and must not end the new one. Rows linked before this
migration get their creation time: the earliest the grant can date from, so no
genuine notification is ignored because of the backfill.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("linked_at", gateway.storage.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE connections SET linked_at = created_at")
    with op.batch_alter_table("connections") as batch:
        batch.alter_column(
            "linked_at",
            existing_type=gateway.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("linked_at")
