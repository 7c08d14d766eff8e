"""refresh jobs listed newest first (the web UI's refreshes page)

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Jobs are never pruned and a scheduled table refresh adds one per tick: without this the
    # newest-first page sorts the whole table on every look.
    op.create_index(
        "ix_refresh_jobs_requested_at_id", "refresh_jobs", ["requested_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_refresh_jobs_requested_at_id", table_name="refresh_jobs")
