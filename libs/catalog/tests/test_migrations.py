"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from freshet.catalog import Database
from freshet.catalog.migrate import current_revision, migrate
from freshet.catalog.models import Base


async def test_migrated_database_matches_the_models(catalog_url: str) -> None:
    db = Database(catalog_url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await db.dispose()
    assert diff == [], "models and migrations differ: write a migration (see docs/architecture.md)"


async def test_migrating_twice_is_harmless(catalog_url: str) -> None:
    before = await current_revision(catalog_url)
    await migrate(catalog_url)
    assert await current_revision(catalog_url) == before
    assert before is not None
