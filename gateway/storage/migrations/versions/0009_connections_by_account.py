"""connections by account: an index for provider notifications, which name the account

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_connections_account", "connections", ["provider", "issuer", "subject"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_connections_account", table_name="connections")
