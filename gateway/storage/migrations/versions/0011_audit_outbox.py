"""audit_outbox: audit events committed with the state change they record

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_outbox",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("draft", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_outbox")),
    )
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_audit_outbox_written", ["written_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_outbox_written")
    op.drop_table("audit_outbox")
