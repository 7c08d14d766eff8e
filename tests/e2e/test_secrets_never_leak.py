"""A sentinel password, driven through every failure path, appears nowhere: not in a response,
a log line of any service, an event on any topic (dead letters included), or a run's error."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest

from freshet.contracts import all_topic_names
from freshet.devstack.testing import eventually, read_topics
from tests.e2e.conftest import System

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.xdist_group("e2e")]

SENTINEL = "Sntl-pw_'q\"uote;9f3e-ünï"
FINAL = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED")


def forms(secret: str) -> set[str]:
    """The ways a secret can show up in text: raw, URL-encoded, JSON-escaped, repr-escaped."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        # A distinctive piece, should anything cut the secret apart.
        "Sntl-pw_",
    }


def leaks(text: str) -> list[str]:
    return [form for form in forms(SENTINEL) if form in text]


async def read_everything(bootstrap: str) -> list[bytes]:
    """Values and header values of every record on every topic, dead letters included."""
    seen: list[bytes] = []
    for record in await read_topics(bootstrap, *all_topic_names()):
        seen.append(record.value or b"")
        seen.extend(value for _, value in record.headers or ())
    return seen


async def test_the_sentinel_password_appears_nowhere(
    http: httpx.AsyncClient, system: System
) -> None:
    responses: list[httpx.Response] = []
    runs: list[str] = []

    async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await http.request(method, url, **kwargs)
        responses.append(response)
        return response

    def endpoint(name: str, **config: Any) -> dict[str, Any]:
        return {
            "name": f"{name}-{uuid.uuid4().hex[:6]}",
            "kind": "postgres",
            "config": {**system.pg_source, **config},
            "secrets": {"password": SENTINEL},
            "run_timeout_s": 20,
        }

    # Authentication failure (no such user; the local server trusts 127.0.0.1 otherwise),
    # an unknown database, an unreachable port.
    made = []
    for body in (
        endpoint("bad-user", user="no_such_user"),
        endpoint("bad-db", database="no_such_db"),
        endpoint("no-port", host="127.0.0.1", port=1),
    ):
        created = await call("POST", "/endpoints", json=body)
        assert created.status_code == 201, created.text
        made.append(created.json())
    for created in made:
        tested = await call("POST", f"/endpoints/{created['id']}/test")
        assert tested.json()["ok"] is False
        triggered = await call("POST", f"/collections/{created['collection_id']}/trigger")
        runs.append(triggered.json()["id"])

    # The same settings tested before saving, and an endpoint that fails its ingestion command
    # loudly, printing the password it was given.
    await call("POST", "/endpoints/test", json=endpoint("draft", database="nope"))
    noisy = endpoint("noisy")
    noisy["ingest_command"] = [
        sys.executable,
        "-c",
        "import os, sys; sys.stderr.write('login failed: ' + os.environ['FRESHET_SECRET_PASSWORD'])"
        "; sys.exit(1)",
    ]
    created = (await call("POST", "/endpoints", json=noisy)).json()
    runs.append(
        (await call("POST", f"/collections/{created['collection_id']}/trigger")).json()["id"]
    )

    # Refused input that carries the password: in argv, in a config key, in a bad field.
    in_argv = endpoint("argv")
    in_argv["ingest_command"] = ["ingest", f"--password={SENTINEL}"]
    in_config = endpoint("cfg")
    in_config["config"]["password"] = SENTINEL
    wrong_type = endpoint("typed")
    wrong_type["secrets"] = {"password": [SENTINEL]}
    for body in (in_argv, in_config, wrong_type):
        refused = await call("POST", "/endpoints", json=body)
        assert refused.status_code == 422, refused.text
    patched = await call(
        "PATCH", f"/endpoints/{made[0]['id']}", json={"config": {"password": SENTINEL}}
    )
    assert patched.status_code == 422

    # Other bad input: malformed cron, unknown ids, hostile names, an oversized body.
    await call(
        "PATCH", f"/collections/{made[0]['collection_id']}", json={"schedule_cron": "61 * * * *"}
    )
    await call("GET", f"/endpoints/{uuid.uuid4()}")
    await call("POST", f"/runs/{uuid.uuid4()}/cancel")
    await call("POST", "/endpoints", json={**endpoint("x"), "name": "a'; drop table x; --ü"})
    await call(
        "POST",
        "/endpoints",
        json={**endpoint("big"), "labels": [SENTINEL * 10] * 5_000},
    )
    # Every read path: REST and GraphQL.
    await call("GET", "/endpoints")
    for created in made:
        await call("GET", f"/endpoints/{created['id']}")
    await call(
        "POST",
        "/graphql",
        json={"query": "{ endpoints { id name config secretFields collection { id } } }"},
    )

    async def all_final() -> bool:
        statuses = [(await http.get(f"/runs/{r}")).json()["status"] for r in runs]
        return all(s in FINAL for s in statuses)

    await eventually(all_final, timeout=90)
    errors = []
    for run_id in runs:
        run = (await call("GET", f"/runs/{run_id}")).json()
        assert run["status"] == "FAILED", run
        errors.append(run["error"])
    # The command did receive the password and print it; what is stored is scrubbed.
    assert any("login failed: ***" in e for e in errors), errors
    await call("GET", "/runs")

    await asyncio.sleep(1)  # let the last log lines and events land
    for response in responses:
        assert not leaks(response.text), (response.request.url, response.text[:300])
    for error in errors:
        assert not leaks(error), error
    log = system.log_text()
    leaked_lines = [line for line in log.splitlines() if leaks(line)]
    assert leaked_lines == []
    for value in await read_everything(system.stack.bootstrap):
        text = value.decode(errors="replace")
        assert not leaks(text), text[:300]
