"""parquet caches, refresh jobs and items, pending deletions, reader leases

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:17:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import freshet.catalog.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cache_deletions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uri", sa.String(length=2000), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("not_before", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cache_deletions")),
        sa.UniqueConstraint("uri", name=op.f("uq_cache_deletions_uri")),
    )
    with op.batch_alter_table("cache_deletions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cache_deletions_not_before"), ["not_before"], unique=False
        )

    op.create_table(
        "cache_readers",
        sa.Column("lease_id", sa.Uuid(), nullable=False),
        sa.Column("uri", sa.String(length=2000), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lease_id", "uri", name=op.f("pk_cache_readers")),
    )
    with op.batch_alter_table("cache_readers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cache_readers_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cache_readers_uri"), ["uri"], unique=False)

    op.create_table(
        "refresh_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trigger_source", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("tables_total", sa.Integer(), nullable=False),
        sa.Column("rows_synced", sa.BigInteger(), nullable=False),
        sa.Column("bytes_written", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.String(length=200), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column(
            "lease_expires_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_refresh_jobs_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_jobs")),
    )
    with op.batch_alter_table("refresh_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refresh_jobs_endpoint_id"), ["endpoint_id"], unique=False
        )
        batch_op.create_index(
            "ix_refresh_jobs_status_lease_expires_at", ["status", "lease_expires_at"], unique=False
        )

    op.create_table(
        "refresh_items",
        sa.Column("refresh_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("schema_name", sa.String(length=200), nullable=False),
        sa.Column("table_name", sa.String(length=400), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("joined_refresh_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.String(length=80), nullable=True),
        sa.Column("uri", sa.String(length=2000), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_refresh_items_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["refresh_id"],
            ["refresh_jobs.id"],
            name=op.f("fk_refresh_items_refresh_id_refresh_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("refresh_id", "dataset_id", name=op.f("pk_refresh_items")),
    )
    with op.batch_alter_table("refresh_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_refresh_items_joined_refresh_id", ["joined_refresh_id"], unique=False
        )
        batch_op.create_index(
            "uq_refresh_items_one_active",
            ["dataset_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('queued', 'running')"),
            postgresql_where=sa.text("status IN ('queued', 'running')"),
        )

    op.create_table(
        "table_caches",
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("lazy_fetch", sa.Boolean(), nullable=True),
        sa.Column("refresh_interval_s", sa.Integer(), nullable=True),
        sa.Column("version", sa.String(length=80), nullable=True),
        sa.Column("uri", sa.String(length=2000), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("schema_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("source_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("synced_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresh_id", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "last_attempt_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_table_caches_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_table_caches_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_table_caches")),
    )
    with op.batch_alter_table("table_caches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_table_caches_endpoint_id"), ["endpoint_id"], unique=False
        )

    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("diff", freshet.catalog.types.JsonType, nullable=True))
        batch_op.add_column(
            sa.Column("invalidate_changed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.alter_column("invalidate_changed", server_default=None)

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cache_lazy_fetch", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column(
                "schema_change_policy",
                sa.String(length=20),
                nullable=False,
                server_default="refresh",
            )
        )
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.alter_column("cache_lazy_fetch", server_default=None)
        batch_op.alter_column("schema_change_policy", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("schema_change_policy")
        batch_op.drop_column("cache_lazy_fetch")

    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_column("invalidate_changed")
        batch_op.drop_column("diff")

    with op.batch_alter_table("table_caches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_table_caches_endpoint_id"))

    op.drop_table("table_caches")
    with op.batch_alter_table("refresh_items", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_refresh_items_one_active",
            sqlite_where=sa.text("status IN ('queued', 'running')"),
            postgresql_where=sa.text("status IN ('queued', 'running')"),
        )
        batch_op.drop_index("ix_refresh_items_joined_refresh_id")

    op.drop_table("refresh_items")
    with op.batch_alter_table("refresh_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_refresh_jobs_status_lease_expires_at")
        batch_op.drop_index(batch_op.f("ix_refresh_jobs_endpoint_id"))

    op.drop_table("refresh_jobs")
    with op.batch_alter_table("cache_readers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cache_readers_uri"))
        batch_op.drop_index(batch_op.f("ix_cache_readers_expires_at"))

    op.drop_table("cache_readers")
    with op.batch_alter_table("cache_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cache_deletions_not_before"))

    op.drop_table("cache_deletions")
