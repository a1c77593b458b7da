"""connections.subject_alias: a second id a provider's notifications may name the account by

Instagram's /me has ``user_id`` (the key) and an app-scoped ``id``; which one
Meta's Deauthorize and Data Deletion callbacks carry is not documented, so both
are matched. Connections linked before this migration have no alias until they
are linked again. Adding a nullable column is a catalogue change on both
databases (no rewrite); the index is built while the table is locked, which on a
connections table (one row per linked account) takes moments.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("connections", sa.Column("subject_alias", sa.String(500), nullable=True))
    op.create_index(
        "ix_connections_account_alias",
        "connections",
        ["provider", "issuer", "subject_alias"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_connections_account_alias", table_name="connections")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("subject_alias")
