"""collection lifecycle: one active run per collection, run leases, endpoint ingestion

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import freshet.catalog.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING_WHERE = "status = 'RUNNING'"
ACTIVE_WHERE = "status IN ('QUEUED', 'RUNNING')"


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "ingest_command",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("run_timeout_s", sa.Integer(), nullable=True))

    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column(
                "lease_expires_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.drop_index(
            "uq_collection_runs_one_running",
            sqlite_where=sa.text(RUNNING_WHERE),
            postgresql_where=sa.text(RUNNING_WHERE),
        )
        batch_op.create_index(
            "uq_collection_runs_one_active",
            ["collection_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE_WHERE),
            postgresql_where=sa.text(ACTIVE_WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_collection_runs_one_active",
            sqlite_where=sa.text(ACTIVE_WHERE),
            postgresql_where=sa.text(ACTIVE_WHERE),
        )
        batch_op.create_index(
            "uq_collection_runs_one_running",
            ["collection_id"],
            unique=True,
            sqlite_where=sa.text(RUNNING_WHERE),
            postgresql_where=sa.text(RUNNING_WHERE),
        )
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("run_timeout_s")
        batch_op.drop_column("ingest_command")
