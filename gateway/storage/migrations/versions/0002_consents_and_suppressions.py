"""consents and suppressions

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("recorded_at", gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=40), nullable=False),
        sa.Column("withdrawn_at", gateway.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
    )
    op.create_index("ix_consents_customer", "consents", ["customer_id", "recorded_at"])
    op.create_table(
        "consent_subjects",
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("subject_hash", sa.String(length=96), nullable=False),
        sa.Column("consent_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
            name="fk_consent_subjects_consent_id_consents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "subject_hash", "consent_id", name="pk_consent_subjects"
        ),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
    )
    op.create_index("ix_suppressions_customer", "suppressions", ["customer_id", "created_at"])
    op.create_table(
        "suppression_subjects",
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("subject_hash", sa.String(length=96), nullable=False),
        sa.Column("suppression_id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["suppression_id"],
            ["suppressions.id"],
            name="fk_suppression_subjects_suppression_id_suppressions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "customer_id",
            "subject_hash",
            "suppression_id",
            "scope",
            name="pk_suppression_subjects",
        ),
    )


def downgrade() -> None:
    op.drop_table("suppression_subjects")
    op.drop_index("ix_suppressions_customer", table_name="suppressions")
    op.drop_table("suppressions")
    op.drop_table("consent_subjects")
    op.drop_index("ix_consents_customer", table_name="consents")
    op.drop_table("consents")
