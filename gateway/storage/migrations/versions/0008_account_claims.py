"""account claims: the linked identity's claims kept at connect time (Apple), sealed

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_claims",
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("claims", sa.Text(), nullable=False),
        sa.Column("updated_at", gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", name="pk_account_claims"),
    )


def downgrade() -> None:
    op.drop_table("account_claims")
