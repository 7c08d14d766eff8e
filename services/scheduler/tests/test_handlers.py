"""The scheduler follows collection changes once each (firing schedules is issue 4)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from freshet.catalog import Database
from freshet.contracts import CollectionChanged
from freshet.devstack.testing import envelope_of
from freshet.scheduler.handlers import handle_collection_changed


def changes(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "freshet_scheduler_collection_changes_total", {"change": kind}
    )
    return value or 0.0


async def test_each_change_is_followed_once(sqlite_catalog: Database) -> None:
    before = {k: changes(k) for k in ("scheduled", "manual", "deleted")}

    def changed(**fields: object) -> CollectionChanged:
        return CollectionChanged(
            collection_id=uuid.uuid4(),
            endpoint_id=uuid.uuid4(),
            changed_at=datetime.now(UTC),
            **fields,
        )

    scheduled = envelope_of(changed(schedule_cron="*/10 * * * *"))
    for env in (scheduled, scheduled, envelope_of(changed()), envelope_of(changed(deleted=True))):
        await handle_collection_changed(env, sqlite_catalog)
    assert {k: changes(k) - before[k] for k in before} == {
        "scheduled": 1,
        "manual": 1,
        "deleted": 1,
    }
