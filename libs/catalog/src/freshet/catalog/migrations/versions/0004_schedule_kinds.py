"""schedule kinds (interval, dataset), jitter, preview sampled-at column

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 03:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import freshet.catalog.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("schedule_jitter_s", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.alter_column("schedule_jitter_s", server_default=None)

    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "preview_sampled_at",
                freshet.catalog.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_datasets_preview_sampled_at"), ["preview_sampled_at"], unique=False
        )

    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_schedules_paused_next_fire_at")
        batch_op.add_column(sa.Column("dataset_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("interval_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("jitter_s", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("due_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.alter_column("cron", existing_type=sa.String(length=120), nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_schedules_dataset_id"), ["dataset_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_schedules_dataset_id_datasets"),
            "datasets",
            ["dataset_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index("ix_schedules_paused_due_at", ["paused", "due_at"], unique=False)
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.alter_column("jitter_s", server_default=None)
    # Schedules from before jitter: their next tick is due at its nominal time.
    op.execute("UPDATE schedules SET due_at = next_fire_at")


def downgrade() -> None:
    op.execute("DELETE FROM schedules WHERE cron IS NULL")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_schedules_paused_due_at")
        batch_op.drop_constraint(batch_op.f("fk_schedules_dataset_id_datasets"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_schedules_dataset_id"), type_="unique")
        batch_op.alter_column("cron", existing_type=sa.String(length=120), nullable=False)
        batch_op.drop_column("due_at")
        batch_op.drop_column("jitter_s")
        batch_op.drop_column("interval_s")
        batch_op.drop_column("dataset_id")
        batch_op.create_index(
            "ix_schedules_paused_next_fire_at", ["paused", "next_fire_at"], unique=False
        )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_preview_sampled_at"))
        batch_op.drop_column("preview_sampled_at")
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.drop_column("schedule_jitter_s")
