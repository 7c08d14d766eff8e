"""catalog foundation

Revision ID: 0001
Revises:
Create Date: 2026-11-23 02:41:07.758501
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import freshet.catalog.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("secret_ciphertext", sa.Text(), nullable=True),
        sa.Column(
            "secret_names",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("preview_policy", sa.String(length=20), nullable=False),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoints")),
        sa.UniqueConstraint("name", name=op.f("uq_endpoints_name")),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=120), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("processed_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_processed_at"), ["processed_at"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=120), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_published_at_id", ["published_at", "id"], unique=False)

    op.create_table(
        "collections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("schedule_cron", sa.String(length=120), nullable=True),
        sa.Column("schedule_timezone", sa.String(length=64), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("schedule_id", sa.String(length=120), nullable=True),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_collections_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collections")),
        sa.UniqueConstraint("endpoint_id", name=op.f("uq_collections_endpoint_id")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("schema_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column(
            "columns",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "primary_key",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("row_estimate", sa.Integer(), nullable=True),
        sa.Column("first_seen_run_id", sa.Uuid(), nullable=True),
        sa.Column("last_seen_run_id", sa.Uuid(), nullable=True),
        sa.Column("removed_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_datasets_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint(
            "endpoint_id",
            "schema_name",
            "name",
            name=op.f("uq_datasets_endpoint_id_schema_name_name"),
        ),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_endpoint_id"), ["endpoint_id"], unique=False)

    op.create_table(
        "collection_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("collection_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trigger_source", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("requested_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("workflow_id", sa.String(length=120), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "filters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("datasets_total", sa.Integer(), nullable=True),
        sa.Column("datasets_added", sa.Integer(), nullable=True),
        sa.Column("datasets_removed", sa.Integer(), nullable=True),
        sa.Column("datasets_changed", sa.Integer(), nullable=True),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_runs_collection_id_collections"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_collection_runs_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_runs")),
    )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index("ix_collection_runs_collection_id", ["collection_id"], unique=False)
        batch_op.create_index("ix_collection_runs_endpoint_id", ["endpoint_id"], unique=False)
        batch_op.create_index(
            "ix_collection_runs_status_requested_at", ["status", "requested_at"], unique=False
        )
        batch_op.create_index(
            "uq_collection_runs_one_running",
            ["collection_id"],
            unique=True,
            sqlite_where=sa.text("status = 'RUNNING'"),
            postgresql_where=sa.text("status = 'RUNNING'"),
        )

    op.create_table(
        "dataset_edges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("source_dataset_id", sa.Uuid(), nullable=False),
        sa.Column("target_dataset_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=600), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", freshet.catalog.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_dataset_edges_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_edges_source_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_edges_target_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_edges")),
        sa.UniqueConstraint(
            "source_dataset_id",
            "target_dataset_id",
            "kind",
            "name",
            name=op.f("uq_dataset_edges_source_dataset_id_target_dataset_id_kind_name"),
        ),
    )
    with op.batch_alter_table("dataset_edges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dataset_edges_endpoint_id"), ["endpoint_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_dataset_edges_source_dataset_id"), ["source_dataset_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_dataset_edges_target_dataset_id"), ["target_dataset_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("dataset_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_edges_target_dataset_id"))
        batch_op.drop_index(batch_op.f("ix_dataset_edges_source_dataset_id"))
        batch_op.drop_index(batch_op.f("ix_dataset_edges_endpoint_id"))

    op.drop_table("dataset_edges")
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_collection_runs_one_running",
            sqlite_where=sa.text("status = 'RUNNING'"),
            postgresql_where=sa.text("status = 'RUNNING'"),
        )
        batch_op.drop_index("ix_collection_runs_status_requested_at")
        batch_op.drop_index("ix_collection_runs_endpoint_id")
        batch_op.drop_index("ix_collection_runs_collection_id")

    op.drop_table("collection_runs")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_endpoint_id"))

    op.drop_table("datasets")
    op.drop_table("collections")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_published_at_id")

    op.drop_table("outbox")
    op.drop_table("leases")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_processed_at"))

    op.drop_table("inbox")
    op.drop_table("endpoints")
