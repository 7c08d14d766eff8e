"""Freshet's catalog: one database (SQLite or PostgreSQL) behind a unit of work."""

from freshet.catalog.database import Database, redact
from freshet.catalog.datasets import DatasetSpec, ForeignKeySpec, SyncResult
from freshet.catalog.models import (
    Collection,
    CollectionRun,
    Dataset,
    DatasetEdge,
    Endpoint,
    PreviewRequest,
    RunStatus,
)
from freshet.catalog.unit_of_work import UnitOfWork

__all__ = [
    "Collection",
    "CollectionRun",
    "Database",
    "Dataset",
    "DatasetEdge",
    "DatasetSpec",
    "Endpoint",
    "ForeignKeySpec",
    "PreviewRequest",
    "RunStatus",
    "SyncResult",
    "UnitOfWork",
    "redact",
]
