"""The preview pipeline against the running system (real broker, catalog and five services):
fan-out after a run with provenance, the per-dataset throttle, manual previews, policy
disabled with purge, masking, truncation and caps, failing and hanging endpoints beside a
healthy one, and samples published from outside with a plain Kafka client (out of order,
duplicated, unmasked, oversized)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from freshet.devstack.testing import eventually, read_topics
from tests.e2e.conftest import SOURCE_PASSWORD, System

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

SECRET_EMAIL = "zed.never-leaves@example.org"
PREVIEWER = "freshet-previewer"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def register(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/endpoints", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def collect(http: httpx.AsyncClient, endpoint: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"/collections/{endpoint['collection_id']}/trigger")
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    async def done() -> dict[str, Any] | None:
        run = (await http.get(f"/runs/{run_id}")).json()
        return run if run["status"] not in ("QUEUED", "RUNNING") else None

    run = dict(await eventually(done, timeout=60))
    assert run["status"] == "SUCCEEDED", run
    return run


async def datasets_of(http: httpx.AsyncClient, endpoint: dict[str, Any]) -> dict[str, Any]:
    listed = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
    return {d["name"]: d for d in listed}


async def previewed(
    http: httpx.AsyncClient, endpoint: dict[str, Any], count: int, run_id: str | None = None
) -> dict[str, Any]:
    """The endpoint's datasets once all `count` have a preview (of `run_id`, if given)."""

    async def probe() -> dict[str, Any] | None:
        found = await datasets_of(http, endpoint)
        ok = len(found) == count and all(
            d["preview"] and (run_id is None or d["preview"]["runId"] == run_id)
            for d in found.values()
        )
        return found if ok else None

    return dict(await eventually(probe, timeout=60))


async def audit(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/audit", params={"first": 500, **params})
    assert response.status_code == 200, response.text
    return list(response.json())


def metric_lines(system: System, name: str) -> list[str]:
    text = httpx.get(f"{system.stack.url('previewer')}/metrics").text
    return [line for line in text.splitlines() if line.startswith(name)]


async def test_a_run_fans_out_previews_with_provenance_then_the_throttle_holds_and_manual_does_not(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await register(
        http, {"name": unique("fanout"), "kind": "sqlite", "config": {"path": str(system.demo)}}
    )
    run = await collect(http, endpoint)
    datasets = await previewed(http, endpoint, 5, run["id"])
    for dataset in datasets.values():
        preview = dataset["preview"]
        assert preview["sampledAt"]
        assert preview["sampledBy"] == PREVIEWER
        assert preview["refreshSource"] == "collection"
        assert preview["rowCount"] == len(preview["rows"]) <= 50
        shown = (await http.get(f"/datasets/{dataset['id']}/preview")).json()
        assert (shown["cached"], shown["stale"], shown["sampled"]) == (True, False, True)
    ids = {d["id"] for d in datasets.values()}
    sampled = await audit(http, action="preview.sample", outcome="sampled")
    assert ids <= {r["target_id"] for r in sampled}
    started = await audit(http, action="preview.sample", outcome="started")
    assert ids <= {r["target_id"] for r in started}
    [fanout] = [
        r
        for r in await audit(http, action="preview.fanout", target_id=endpoint["id"])
        if r["details"]["runId"] == run["id"]
    ]
    assert fanout["outcome"] == "requested"
    assert fanout["details"]["requested"] == 5

    # The gauges say how old the endpoint's previews are.
    async def gauges() -> bool:
        stale = metric_lines(system, f'freshet_previews_stale{{endpoint="{endpoint["name"]}"}}')
        age = metric_lines(
            system, f'freshet_preview_oldest_age_seconds{{endpoint="{endpoint["name"]}"}}'
        )
        return stale == [f'freshet_previews_stale{{endpoint="{endpoint["name"]}"}} 0.0'] and bool(
            age
        )

    await eventually(gauges, timeout=20)

    # A second run within the hour: every dataset's automatic refresh is throttled.
    second = await collect(http, endpoint)

    async def throttled() -> list[dict[str, Any]] | None:
        found = [
            r
            for r in await audit(http, action="preview.sample", outcome="throttled")
            if r["details"]["runId"] == second["id"]
        ]
        return found if len(found) == 5 else None

    records = await eventually(throttled, timeout=30)
    assert {r["target_id"] for r in records} == ids
    assert all(
        d["preview"]["runId"] == run["id"] for d in (await datasets_of(http, endpoint)).values()
    )

    # A manual preview bypasses the throttle and answers with fresh rows.
    orders = datasets["orders"]
    response = await http.post(f"/datasets/{orders['id']}/preview")
    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["cached"] is False
    assert fresh["refresh_source"] == "manual"
    assert fresh["sampled_by"] == PREVIEWER
    assert datetime.fromisoformat(fresh["sampled_at"]) > datetime.fromisoformat(
        orders["preview"]["sampledAt"]
    )
    assert fresh["request"]["status"] == "persisted"
    assert metric_lines(system, 'freshet_preview_requests_total{outcome="throttled"')


async def test_disabling_previews_purges_them_and_nothing_is_sampled_after(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await register(
        http, {"name": unique("disabled"), "kind": "sqlite", "config": {"path": str(system.demo)}}
    )
    run = await collect(http, endpoint)
    await previewed(http, endpoint, 5, run["id"])

    response = await http.patch(f"/endpoints/{endpoint['id']}", json={"preview_policy": "disabled"})
    assert response.status_code == 200, response.text
    assert all(d["preview"] is None for d in (await datasets_of(http, endpoint)).values())

    again = await collect(http, endpoint)

    async def refused() -> bool:
        return any(
            r["details"]["runId"] == again["id"] and r["outcome"] == "refused"
            for r in await audit(http, action="preview.fanout", target_id=endpoint["id"])
        )

    await eventually(refused, timeout=30)
    datasets = await datasets_of(http, endpoint)
    assert all(d["preview"] is None for d in datasets.values())
    manual = await http.post(f"/datasets/{datasets['orders']['id']}/preview")
    assert manual.status_code == 409
    assert manual.json()["error"]["code"] == "E_PREVIEW_DISABLED"
    [purge] = await audit(http, action="preview.purge", target_id=endpoint["id"])
    assert purge["details"]["datasetsPurged"] == 5


def _wide_source(path: Path) -> Path:
    """people: masked columns, long text, blobs; wide: rows too big for 64 KB together."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, Email TEXT, ssn_last4 TEXT, "
            "bio TEXT, photo BLOB)"
        )
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    SECRET_EMAIL if i == 1 else f"p{i}@example.org",
                    "1234",
                    "é" * 3000,
                    b"\x00" * 700,
                )
                for i in range(1, 81)
            ],
        )
        conn.execute("CREATE TABLE wide (id INTEGER PRIMARY KEY, a TEXT, b TEXT, c TEXT)")
        conn.executemany(
            "INSERT INTO wide VALUES (?, ?, ?, ?)",
            [(i, "x" * 900, "y" * 900, "z" * 900) for i in range(60)],
        )
    conn.close()
    return path


async def test_previews_are_masked_bounded_and_capped(
    http: httpx.AsyncClient, system: System, tmp_path: Path
) -> None:
    source = _wide_source(tmp_path / f"wide-{uuid.uuid4().hex[:6]}.db")
    endpoint = await register(
        http,
        {
            "name": unique("masked"),
            "kind": "sqlite",
            "config": {"path": str(source)},
            "preview_masks": ["email", "re:^ssn"],
        },
    )
    run = await collect(http, endpoint)
    datasets = await previewed(http, endpoint, 2, run["id"])

    people = (await http.get(f"/datasets/{datasets['people']['id']}/preview")).json()
    columns = people["columns"]
    assert people["masked_columns"] == ["Email", "ssn_last4"]
    assert people["row_count"] == 50
    for row in people["rows"]:
        assert row[columns.index("Email")] == "***masked***"
        assert row[columns.index("ssn_last4")] == "***masked***"
        bio = row[columns.index("bio")]
        assert bio.endswith("…[truncated]")
        assert len(bio.encode()) <= 1024
        assert row[columns.index("photo")] == "<binary 700 bytes>"
    assert people["truncated"] is True
    truncation = people["truncation"]
    assert truncation["valuesTruncated"] == 50
    assert truncation["binaryReplaced"] == 50
    assert truncation["maxValueBytes"] == 1024

    wide = (await http.get(f"/datasets/{datasets['wide']['id']}/preview")).json()
    size = len(json.dumps({"columns": wide["columns"], "rows": wide["rows"]}).encode())
    assert size <= 65536
    assert 0 < wide["row_count"] < 50
    assert wide["truncation"]["rowsDroppedForSize"] == 50 - wide["row_count"]
    assert [r[0] for r in wide["rows"]] == list(range(wide["row_count"]))  # the first rows

    # The masked value never left the previewer: not in the catalog's API, not in any log.
    assert SECRET_EMAIL not in json.dumps(await datasets_of(http, endpoint))
    assert SECRET_EMAIL not in system.log_text()


async def test_failing_and_hanging_endpoints_never_hold_up_a_healthy_ones_previews(
    http: httpx.AsyncClient, system: System, silent_port: int
) -> None:
    def pg(name: str) -> dict[str, Any]:
        return {
            "name": unique(name),
            "kind": "postgres",
            "config": system.pg_source,
            "secrets": {"password": SOURCE_PASSWORD},
            "preview_policy": "manual-only",
        }

    failing = await register(http, pg("pv-failing"))
    hanging = await register(http, pg("pv-hanging"))
    healthy = await register(
        http, {"name": unique("pv-healthy"), "kind": "sqlite", "config": {"path": str(system.demo)}}
    )
    for endpoint in (failing, hanging):
        await collect(http, endpoint)
    await previewed(http, healthy, 5, (await collect(http, healthy))["id"])
    # The sources go bad after their datasets are known: refused, and silent.
    for endpoint, port in ((failing, 1), (hanging, silent_port)):
        config = {**system.pg_source, "host": "127.0.0.1", "port": port}
        response = await http.patch(f"/endpoints/{endpoint['id']}", json={"config": config})
        assert response.status_code == 200, response.text
    bad = [
        (await datasets_of(http, endpoint))["customers"]["id"] for endpoint in (hanging, failing)
    ]
    good = [d["id"] for d in (await datasets_of(http, healthy)).values()]

    hang_task = asyncio.create_task(http.post(f"/datasets/{bad[0]}/preview"))
    fail_task = asyncio.create_task(http.post(f"/datasets/{bad[1]}/preview"))
    await asyncio.sleep(0.2)  # both requests are in; the healthy ones come after
    healthy_answers = await asyncio.gather(*(http.post(f"/datasets/{d}/preview") for d in good))
    assert [r.status_code for r in healthy_answers] == [200] * 5
    assert all(r.json()["cached"] is False for r in healthy_answers)
    assert not hang_task.done(), "a healthy preview waited for the hanging source"

    failed = await fail_task
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["code"] == "E_PREVIEW_FAILED"
    assert "gave up after 3 attempts" in failed.json()["error"]["message"]
    hung = await hang_task
    assert hung.status_code == 202, hung.text
    poll = hung.json()["request"]["poll_url"]

    async def hang_failed() -> dict[str, Any] | None:
        request = (await http.get(poll)).json()
        return request if request["status"] == "failed" else None

    request = await eventually(hang_failed, timeout=30)
    assert request["attempts"] == 3
    assert "timed out" in request["reason"]
    preview = (await http.get(f"/datasets/{bad[0]}/preview")).json()
    assert preview["last_error"]["reason"] == request["reason"]
    # The failure is recorded with its reason, never with a secret.
    for record in await audit(http, action="preview.sample", outcome="failed"):
        assert SOURCE_PASSWORD not in json.dumps(record)
    assert SOURCE_PASSWORD not in system.log_text()


def _cloudevent(data: dict[str, Any], event_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A PreviewSampled as any Kafka client would write it: CloudEvents binary mode."""
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_type": "freshet.preview.sampled.v1",
        "ce_source": "/outside/sampler",
        "ce_time": datetime.now(UTC).isoformat(),
        "content-type": "application/json",
    }
    return json.dumps(data).encode(), [(k, v.encode()) for k, v in headers.items()]


async def test_an_outside_sampler_publishes_with_a_plain_kafka_client(
    http: httpx.AsyncClient, system: System
) -> None:
    endpoint = await register(
        http,
        {
            "name": unique("outside"),
            "kind": "sqlite",
            "config": {"path": str(system.demo)},
            "preview_policy": "manual-only",
            "preview_masks": ["email"],
        },
    )
    await collect(http, endpoint)
    datasets = await datasets_of(http, endpoint)
    target = datasets["customers"]["id"]
    newer = datetime.now(UTC)
    older = newer - timedelta(minutes=10)

    def sample(at: datetime, marker: str, rows: int = 1) -> dict[str, Any]:
        return {
            "dataset_id": target,
            "columns": ["id", "email", "note"],
            "rows": [[i, SECRET_EMAIL, marker + "!" * 3000] for i in range(rows)],
            "sampled_at": at.isoformat(),
            "sampled_by": "outside-sampler",
            "refresh_source": "external",
            "row_count": rows,
        }

    newer_id = str(uuid.uuid4())
    messages = [
        _cloudevent(sample(newer, "newer"), newer_id),
        _cloudevent(sample(older, "older"), str(uuid.uuid4())),  # late: never replaces newer
        _cloudevent(sample(newer, "newer"), newer_id),  # the same event again
        _cloudevent(sample(newer, "too-many", rows=60), str(uuid.uuid4())),  # over the cap
    ]
    producer = AIOKafkaProducer(bootstrap_servers=system.stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value, headers in messages:
            await producer.send_and_wait(
                "freshet.preview.sampled", value, key=target.encode(), headers=headers
            )
    finally:
        await producer.stop()

    async def persisted() -> list[dict[str, Any]] | None:
        found = await audit(http, action="preview.persist", target_id=target)
        return found if len(found) >= 2 else None

    records = await eventually(persisted, timeout=30)
    assert sorted(r["outcome"] for r in records) == ["stale_ignored", "stored"]
    assert {r["actor"] for r in records} == {"outside-sampler"}
    preview = (await http.get(f"/datasets/{target}/preview")).json()
    assert preview["sampled_by"] == "outside-sampler"
    assert preview["refresh_source"] == "external"
    assert datetime.fromisoformat(preview["sampled_at"]) == newer
    assert preview["rows"][0][1] == "***masked***"
    assert preview["rows"][0][2].startswith("newer")
    assert preview["rows"][0][2].endswith("…[truncated]")
    assert preview["masked_columns"] == ["email"]
    assert SECRET_EMAIL not in json.dumps(preview)

    async def dead_lettered() -> bool:
        dead = await read_topics(system.stack.bootstrap, "freshet.preview.sampled.dlq", timeout=1)
        return any(
            dict(r.headers).get("freshet_dlq_reason") == b"invalid_event" and b"too-many" in r.value
            for r in dead
        )

    await eventually(dead_lettered, timeout=30)
