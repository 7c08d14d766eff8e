"""Finding datasets by name, endpoint and label, a page at a time.

Pages by keyset on (schema_name, name, id), like run history: a page never repeats or skips a
dataset when others arrive between pages. A label matches the dataset's own labels
(`endpoint:<id>`, `source:<kind>`) or its endpoint's (what operators set, e.g. `team:x`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, cast, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from freshet.catalog.cursors import decode_cursor, encode_cursor
from freshet.catalog.models import Dataset, Endpoint

LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class DatasetQuery:
    # Part of `schema.name`, any case.
    text: str | None = None
    endpoint_id: uuid.UUID | None = None
    label: str | None = None
    include_removed: bool = False


def dataset_cursor(dataset: Dataset) -> str:
    return encode_cursor(dataset.schema_name, dataset.name, str(dataset.id))


def _like_pattern(fragment: str) -> str:
    escaped = fragment.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def _has_label(
    dialect: str, column: InstrumentedAttribute[list[Any]], label: str
) -> ColumnElement[bool]:
    """Whether a JSON list column holds `label` exactly, in the database's own JSON terms."""
    if dialect == "postgresql":
        contains: ColumnElement[bool] = column.op("@>")(cast(literal(json.dumps([label])), JSONB))
        return contains
    each = func.json_each(column).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == label))


async def search_datasets(
    session: AsyncSession, query: DatasetQuery, *, first: int = 50, after: str | None = None
) -> list[Dataset]:
    """Datasets matching every given criterion, by schema and name; ValueError for a cursor
    that is not one of ours."""
    dialect = session.get_bind().dialect.name
    stmt = select(Dataset).order_by(Dataset.schema_name, Dataset.name, Dataset.id)
    if not query.include_removed:
        stmt = stmt.where(Dataset.removed_at.is_(None))
    if query.endpoint_id is not None:
        stmt = stmt.where(Dataset.endpoint_id == query.endpoint_id)
    if query.text:
        full_name = func.lower(Dataset.schema_name + "." + Dataset.name)
        stmt = stmt.where(full_name.like(_like_pattern(query.text), escape=LIKE_ESCAPE))
    if query.label:
        stmt = stmt.join(Endpoint, Endpoint.id == Dataset.endpoint_id).where(
            or_(
                _has_label(dialect, Dataset.labels, query.label),
                _has_label(dialect, Endpoint.labels, query.label),
            )
        )
    if after is not None:
        schema, name, id_raw = decode_cursor(after, parts=3)
        rid = uuid.UUID(id_raw)
        stmt = stmt.where(
            or_(
                Dataset.schema_name > schema,
                and_(Dataset.schema_name == schema, Dataset.name > name),
                and_(Dataset.schema_name == schema, Dataset.name == name, Dataset.id > rid),
            )
        )
    result = await session.execute(stmt.limit(first))
    return list(result.scalars())


async def known_labels(session: AsyncSession, *, limit: int = 200) -> list[str]:
    """Labels set on endpoints, for a filter's suggestions (dataset labels derive from them)."""
    result = await session.execute(select(Endpoint.labels))
    labels = {str(label) for row in result.scalars() for label in row}
    return sorted(labels)[:limit]


async def dataset_names(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """`schema.name` of each dataset that exists, without loading payloads (previews)."""
    wanted = list(ids)
    if not wanted:
        return {}
    result = await session.execute(
        select(Dataset.id, Dataset.schema_name, Dataset.name).where(Dataset.id.in_(wanted))
    )
    return {row[0]: f"{row[1]}.{row[2]}" for row in result.all()}
