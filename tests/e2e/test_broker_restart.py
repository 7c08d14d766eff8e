"""The running system survives a restart of the embedded broker, which loses every topic,
offset and group: topics come back, unconsumed events are sent again, work goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshet.devstack.broker import free_port
from freshet.devstack.testing import eventually
from freshet.devstack.up import SERVICES, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("broker-restart")]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, str, Path]]:
    stack = Stack(
        data_dir=tmp_path,
        gateway_port=free_port(),
        kafka_port=free_port(),
        ports={name: free_port() for name in SERVICES},
        # The second run's previews are the point here, not the per-dataset throttle.
        extra_env={"FRESHET_SESSION_TIMEOUT_MS": "6000", "FRESHET_PREVIEW_DATASET_INTERVAL_S": "0"},
    )
    try:
        token, demo = stack.start()
        yield stack, token, demo
    finally:
        stack.stop()


async def run_to_end(http: httpx.AsyncClient, collection_id: str) -> dict[str, Any]:
    response = await http.post(f"/collections/{collection_id}/trigger")
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    async def finished() -> dict[str, Any] | None:
        run = (await http.get(f"/runs/{run_id}")).json()
        return run if run["status"] not in ("QUEUED", "RUNNING") else None

    return dict(await eventually(finished, timeout=90, interval=0.2))


async def test_work_goes_on_after_the_broker_restarts(stack: tuple[Stack, str, Path]) -> None:
    system, token, demo = stack
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=system.gateway_url, headers=headers) as http:
        endpoint = (
            await http.post(
                "/endpoints",
                json={"name": "shop", "kind": "sqlite", "config": {"path": str(demo)}},
            )
        ).json()
        assert (await run_to_end(http, endpoint["collection_id"]))["status"] == "SUCCEEDED"

        assert system.broker is not None
        system.broker.restart()  # memory storage: every topic, offset and group is gone

        after = await run_to_end(http, endpoint["collection_id"])
        assert after["status"] == "SUCCEEDED"

        async def previews_after_restart() -> bool:
            datasets = (await http.get("/datasets", params={"endpoint_id": endpoint["id"]})).json()
            return bool(datasets) and all(
                d["preview"] and d["preview"]["runId"] == after["id"] for d in datasets
            )

        await eventually(previews_after_restart, timeout=90, interval=0.2)
        for name in SERVICES:
            ready = (await http.get(f"{system.url(name)}/ready")).json()
            assert ready["status"] == "ready", ready
