"""processor requests: requests, their completed steps, downloadable bundles

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = gateway.storage.types.UTCDateTime
    op.create_table(
        "processor_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("jurisdiction", sa.String(length=8), nullable=True),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("lift", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("filed_by", sa.String(length=40), nullable=False),
        sa.Column("filed_class", sa.String(length=16), nullable=False),
        sa.Column("verified_by", sa.String(length=200), nullable=True),
        sa.Column("verified_at", utc(timezone=True), nullable=True),
        sa.Column("received_at", utc(timezone=True), nullable=False),
        sa.Column("due_at", utc(timezone=True), nullable=False),
        sa.Column("updated_at", utc(timezone=True), nullable=False),
        sa.Column("finished_at", utc(timezone=True), nullable=True),
        sa.Column("open_key", sa.String(length=64), nullable=True),
        sa.Column("subject_hashes", sa.JSON(), nullable=False),
        sa.Column("sealed_subject", sa.Text(), nullable=True),
        sa.Column("lease_until", utc(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_processor_requests"),
        sa.UniqueConstraint("open_key", name="uq_processor_requests_open_key"),
    )
    op.create_index("ix_processor_requests_status", "processor_requests", ["status", "received_at"])
    op.create_index(
        "ix_processor_requests_customer", "processor_requests", ["customer_id", "received_at"]
    )
    op.create_table(
        "processor_request_steps",
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("completed_at", utc(timezone=True), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["processor_requests.id"],
            name="fk_processor_request_steps_request_id_processor_requests",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "step", name="pk_processor_request_steps"),
    )
    op.create_table(
        "processor_request_bundles",
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["processor_requests.id"],
            name="fk_processor_request_bundles_request_id_processor_requests",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "name", name="pk_processor_request_bundles"),
    )


def downgrade() -> None:
    op.drop_table("processor_request_bundles")
    op.drop_table("processor_request_steps")
    op.drop_index("ix_processor_requests_customer", table_name="processor_requests")
    op.drop_index("ix_processor_requests_status", table_name="processor_requests")
    op.drop_table("processor_requests")
