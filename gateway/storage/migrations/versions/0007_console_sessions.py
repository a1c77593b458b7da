"""console sessions: signed-in auditor browsers, stored hashed

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = gateway.storage.types.UTCDateTime
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("caller_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", utc(timezone=True), nullable=False),
        sa.Column("last_seen_at", utc(timezone=True), nullable=False),
        sa.Column("expires_at", utc(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_console_sessions"),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires", table_name="console_sessions")
    op.drop_table("console_sessions")
