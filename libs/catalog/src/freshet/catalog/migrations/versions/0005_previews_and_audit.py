"""preview requests, audit records, endpoint preview masks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import freshet.catalog.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("correlation_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_records_action"), ["action"], unique=False)
        batch_op.create_index("ix_audit_records_at_id", ["at", "id"], unique=False)
        batch_op.create_index(
            "ix_audit_records_target_type_target_id", ["target_type", "target_id"], unique=False
        )

    op.create_table(
        "preview_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("refresh_source", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("correlation_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("sampled_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_preview_requests_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_preview_requests_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preview_requests")),
    )
    with op.batch_alter_table("preview_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_preview_requests_dataset_id_requested_at",
            ["dataset_id", "requested_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_preview_requests_endpoint_id_status", ["endpoint_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_preview_requests_status_due_at", ["status", "due_at"], unique=False
        )

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "preview_masks",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.alter_column("preview_masks", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("preview_masks")

    with op.batch_alter_table("preview_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_preview_requests_status_due_at")
        batch_op.drop_index("ix_preview_requests_endpoint_id_status")
        batch_op.drop_index("ix_preview_requests_dataset_id_requested_at")

    op.drop_table("preview_requests")
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_records_target_type_target_id")
        batch_op.drop_index("ix_audit_records_at_id")
        batch_op.drop_index(batch_op.f("ix_audit_records_action"))

    op.drop_table("audit_records")
