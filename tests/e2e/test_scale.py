"""Scale proof: two replicas each of the collector, previewer and refresher against one broker
and one PostgreSQL catalog. Work spreads over both replicas (each holds some partitions and
handles some messages), and killing one replica mid-work (SIGKILL) loses nothing and
duplicates nothing: every requested run reaches a final status exactly once, every dataset
gets its preview, and every table refresh completes once with its cache pointer set.

The second refresher kills itself (SIGKILL, its test failpoint) just before it would move the
pointer of the first table it refreshes: its file is written, its job is leased, and the
survivor has to take the job over and write the table again.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from freshet.catalog import CollectionRun, Database, RunStatus, UnitOfWork
from freshet.contracts import (
    CollectionRequested,
    Event,
    RefreshRequested,
    RunCompleted,
    topic_for,
)
from freshet.devstack.broker import free_port
from freshet.devstack.testing import (
    create_postgres_database,
    drop_postgres_database,
    eventually,
    read_topics,
)
from freshet.devstack.up import Stack
from tests.e2e.conftest import stack_on_free_ports

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.broker,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("scale"),
]

SCALED = ("collector", "previewer", "refresher")
# Test-only crash point (services/refresher/__main__.py): dies before moving a pointer.
REPLICA_ENV = {"refresher": {"FRESHET_TEST_REFRESH_FAILPOINT": "before_pointer"}}
ENDPOINTS = 12
INGEST_SECONDS = 3
TABLES = ("customers", "orders", "products")
# Groups and the topic each consumes (partitions: 3 each, docs/architecture.md).
GROUPS = {
    "collector": {"freshet-collector": "freshet.collection.requested"},
    "previewer": {
        "freshet-previewer.fanout": "freshet.run.completed",
        "freshet-previewer.sample": "freshet.preview.requested",
        "freshet-previewer.persist": "freshet.preview.sampled",
    },
    "refresher": {
        "freshet-refresher": "freshet.refresh.requested",
        "freshet-refresher.runs": "freshet.run.completed",
    },
}


@pytest.fixture(scope="module")
def scaled(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str
) -> Iterator[tuple[Stack, str, Path]]:
    data_dir = tmp_path_factory.mktemp("scale")
    catalog = create_postgres_database(postgres_server_url)
    # A killed replica's partitions move after the session timeout, its runs after the lease:
    # both shortened so the test takes seconds, not a minute.
    stack = stack_on_free_ports(
        data_dir,
        catalog,
        {
            "FRESHET_SESSION_TIMEOUT_MS": "6000",
            "FRESHET_RUN_LEASE_TTL_S": "6",
            "FRESHET_REFRESH_LEASE_TTL_S": "6",
            "FRESHET_GRACEFUL_TIMEOUT_S": "3",
        },
    )
    try:
        token, demo = stack.start()
        replicas = tuple(f"{name}-2" for name in SCALED)
        for name in SCALED:
            stack.start_replica(name, f"{name}-2", free_port(), REPLICA_ENV.get(name))
        stack.wait_ready(replicas)
        yield stack, token, demo
    finally:
        stack.stop()
        drop_postgres_database(postgres_server_url, catalog)


def metrics_of(stack: Stack, process: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{stack.url(process)}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def ingest_command(folder: Path) -> list[str]:
    """An external ingestion that takes INGEST_SECONDS and reports three demo tables, so runs
    are still RUNNING when a collector is killed."""
    records = folder / "records.ndjson"
    if not records.exists():
        records.write_text(
            "".join(
                json.dumps(
                    {
                        "schema_name": "main",
                        "name": table,
                        "columns": [{"name": "id", "data_type": "INTEGER", "nullable": False}],
                        "primary_key": ["id"],
                    }
                )
                + "\n"
                for table in TABLES
            )
        )
    return ["sh", "-c", f'sleep {INGEST_SECONDS}; cat "{records}" > "$FRESHET_OUTPUT_PATH"']


async def partitions_spread(stack: Stack) -> dict[str, dict[str, float]] | None:
    """Every group of the scaled services has partitions on both replicas, all 3 held."""
    held: dict[str, dict[str, float]] = {}
    for service, groups in GROUPS.items():
        first, second = metrics_of(stack, service), metrics_of(stack, f"{service}-2")
        for group, topic in groups.items():
            a = value(first, "freshet_consumer_assigned_partitions", group=group, topic=topic)
            b = value(second, "freshet_consumer_assigned_partitions", group=group, topic=topic)
            held[group] = {service: a, f"{service}-2": b}
            if a < 1 or b < 1 or a + b != 3:
                return None
    return held


def assigned_partitions(stack: Stack, process: str, group: str) -> set[int]:
    """The partitions the process holds in the group now: its last "partitions assigned" line
    (the metric only counts them)."""
    held: set[int] = set()
    for line in (stack.data_dir / "logs" / f"{process}.log").read_text().splitlines():
        if '"partitions assigned"' in line:
            entry = json.loads(line)
            if entry.get("group") == group:
                held = set(entry["partitions"])
    assert held, f"{process} holds no partition of {group}"
    return held


def partition_of(key: str, event: type[Event]) -> int:
    """Where the relay's producer puts an event with this key (Kafka's default partitioner)."""
    partitions = list(range(topic_for(event).partitions))
    return int(DefaultPartitioner()(key.encode(), partitions, partitions))


def victims_partitions(stack: Stack) -> list[tuple[set[int], type[Event], str]]:
    """What each replica that must have work holds: both collectors, the crashing refresher
    (partitions, the request event, the endpoint field that keys it)."""
    return [
        (
            assigned_partitions(stack, "collector", "freshet-collector"),
            CollectionRequested,
            "collection_id",
        ),
        (
            assigned_partitions(stack, "collector-2", "freshet-collector"),
            CollectionRequested,
            "collection_id",
        ),
        (assigned_partitions(stack, "refresher-2", "freshet-refresher"), RefreshRequested, "id"),
    ]


def work_for_every_victim(
    victims: list[tuple[set[int], type[Event], str]], endpoints: list[dict[str, Any]]
) -> bool:
    """Each victim's partitions hold a request key of some endpoint."""
    return all(
        any(partition_of(e[field], event) in held for e in endpoints)
        for held, event, field in victims
    )


async def running_runs_of(stack: Stack, process: str) -> set[str]:
    """Ids of the RUNNING runs whose lease this process holds (its holder id ends in its pid)."""
    assert stack.database_url is not None
    db = Database(stack.database_url)
    pid = stack.processes[process].pid
    try:
        async with UnitOfWork(db, read_only=True) as uow:
            rows = await uow.session.execute(
                select(CollectionRun.id).where(
                    CollectionRun.status == RunStatus.RUNNING.value,
                    CollectionRun.lease_owner.like(f"%:{pid}"),
                )
            )
            return {str(r) for r in rows.scalars()}
    finally:
        await db.dispose()


async def test_work_spreads_over_replicas_and_survives_a_killed_one(
    scaled: tuple[Stack, str, Path],
) -> None:
    stack, token, demo = scaled
    # Rebalancing after the second replicas joined takes up to a session timeout.
    await eventually(lambda: partitions_spread(stack), timeout=60, interval=0.5)
    headers = {"Authorization": f"Bearer {token}"}
    command = ingest_command(stack.data_dir)
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        # Which replica gets a request is up to hashing its key (collection requests by
        # collection, refresh requests by endpoint): with 12 keys over 3 partitions one
        # partition gets none about once in 130 tries. Registering on until both collectors
        # and the second refresher have work makes the kills mid-work in every run.
        victims = victims_partitions(stack)
        endpoints: list[dict[str, Any]] = []
        i = 0
        while len(endpoints) < ENDPOINTS or not work_for_every_victim(victims, endpoints):
            i += 1
            response = await http.post(
                "/endpoints",
                json={
                    "name": f"scale-{i}-{uuid.uuid4().hex[:4]}",
                    "kind": "sqlite",
                    "config": {"path": str(demo)},
                    "ingest_command": command,
                },
            )
            assert response.status_code == 201, response.text
            endpoints.append(response.json())
        runs = []
        for endpoint in endpoints:
            response = await http.post(f"/collections/{endpoint['collection_id']}/trigger")
            assert response.status_code == 202, response.text
            runs.append(response.json()["id"])

        # Both collectors hold RUNNING runs; kill the second while it does.
        async def both_collecting() -> set[str] | None:
            mine = await running_runs_of(stack, "collector")
            theirs = await running_runs_of(stack, "collector-2")
            return theirs if mine and theirs else None

        await eventually(both_collecting, timeout=60, interval=0.1)
        os.kill(stack.processes["collector-2"].pid, signal.SIGKILL)
        stack.processes["collector-2"].wait()
        orphaned = await running_runs_of(stack, "collector-2")

        # Kill the second previewer once it has sampled something, while runs (the ones taken
        # over from the dead collector) are still to complete and fan out.
        async def second_previewer_sampling() -> bool:
            second = metrics_of(stack, "previewer-2")
            return (
                value(second, "freshet_messages_consumed_total", topic="freshet.preview.requested")
                >= 1
            )

        await eventually(second_previewer_sampling, timeout=90, interval=0.1)
        pending = await _datasets_without_preview(http, endpoints)
        os.kill(stack.processes["previewer-2"].pid, signal.SIGKILL)

        async def all_final() -> list[dict[str, Any]] | None:
            found = [(await http.get(f"/runs/{run_id}")).json() for run_id in runs]
            return found if all(r["status"] not in ("QUEUED", "RUNNING") for r in found) else None

        finished = await eventually(all_final, timeout=120, interval=0.5)
        assert [r["status"] for r in finished] == ["SUCCEEDED"] * len(endpoints), finished
        # The runs the dead collector held were taken over by the survivor and finished there.
        assert orphaned, "collector-2 held no RUNNING run when it was killed: not mid-work"
        survivor = metrics_of(stack, "collector")
        assert value(survivor, "freshet_collection_run_takeovers_total") >= len(orphaned)

        # Nothing duplicated: one run per collection, one RunCompleted event per run.
        for endpoint in endpoints:
            history = (await http.get(f"/collections/{endpoint['collection_id']}/runs")).json()
            assert len(history) == 1, history
        completed: dict[str, set[str]] = defaultdict(set)
        for record in await read_topics(stack.bootstrap, topic_for(RunCompleted).name):
            run_id = json.loads(record.value)["run_id"]
            completed[run_id].add(dict(record.headers)["ce_id"].decode())
        assert {run_id: len(completed[run_id]) for run_id in runs} == dict.fromkeys(runs, 1)

        # Nothing lost: every dataset of every endpoint gets its preview.
        async def every_preview() -> bool:
            return not await _datasets_without_preview(http, endpoints)

        await eventually(every_preview, timeout=120, interval=0.5)
        assert pending, "the previewer was killed after all previews were done: not mid-work"

        await _refresh_every_table_surviving_a_killed_refresher(stack, http, endpoints)


async def _refresh_every_table_surviving_a_killed_refresher(
    stack: Stack, http: httpx.AsyncClient, endpoints: list[dict[str, Any]]
) -> None:
    jobs = []
    for endpoint in endpoints:
        response = await http.post(
            f"/connections/{endpoint['name']}/refresh",
            params={"async": "true"},
            json={"all_tables": True},
        )
        assert response.status_code == 202, response.text
        jobs.append(response.json()["refresh_id"])

    # Its partitions hold some of the endpoints: it takes a job and dies in the middle of it.
    await eventually(
        lambda: _true_when(stack.processes["refresher-2"].poll() is not None), timeout=60
    )

    async def all_done() -> list[dict[str, Any]] | None:
        found = [(await http.get(f"/refresh/{job}")).json() for job in jobs]
        return found if all(j["status"] in ("completed", "failed") for j in found) else None

    done = await eventually(all_done, timeout=120, interval=0.5)
    assert [(j["status"], j["tables_succeeded"], j["tables_failed"]) for j in done] == [
        ("completed", len(TABLES), 0)
    ] * len(jobs), done
    for endpoint in endpoints:
        for table in TABLES:
            cache = (
                await http.get(f"/connections/{endpoint['name']}/tables/main/{table}/cache")
            ).json()
            assert cache["version"], cache
            assert cache["rows"], cache
    # Nothing duplicated: each table of each job moved its pointer once (one event each).
    moved: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in await read_topics(stack.bootstrap, "freshet.table.refreshed"):
        event = json.loads(record.value)
        moved[(event["refresh_id"], event["table_name"])].add(
            dict(record.headers)["ce_id"].decode()
        )
    assert {k: len(v) for k, v in moved.items() if k[0] in jobs} == {
        (job, table): 1 for job in jobs for table in TABLES
    }
    survivor = metrics_of(stack, "refresher")
    assert value(survivor, "freshet_refresh_tables_total", outcome="succeeded") >= 1


async def _true_when(condition: bool) -> bool:
    return condition


async def _datasets_without_preview(
    http: httpx.AsyncClient, endpoints: list[dict[str, Any]]
) -> list[str]:
    missing = []
    for endpoint in endpoints:
        datasets = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
        if len(datasets) < len(TABLES):
            missing.append(f"{endpoint['name']}: {len(datasets)} datasets")
        missing += [f"{endpoint['name']}.{d['name']}" for d in datasets if not d["preview"]]
    return missing
