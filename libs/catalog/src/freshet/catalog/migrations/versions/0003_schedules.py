"""schedules the scheduler fires

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import freshet.catalog.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("collection_id", sa.Uuid(), nullable=True),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.Uuid(), nullable=True),
        sa.Column("missed_ticks", sa.Integer(), nullable=False),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_schedules_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("collection_id", name=op.f("uq_schedules_collection_id")),
    )
    op.create_index(
        "ix_schedules_paused_next_fire_at", "schedules", ["paused", "next_fire_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_schedules_paused_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
