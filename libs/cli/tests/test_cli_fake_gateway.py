"""The CLI against a small fake gateway (a real HTTP server on loopback) that records requests.

For the preview and refresh commands these are the only tests until the routes of issues 5 and
6 are merged (then the lead runs them against the real gateway too); for the rest, they cover
what the real gateway cannot easily be made to do (errors, no answer).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from freshet.cli.app import app
from freshet.devstack.broker import free_port

TOKEN = "fsh_test-token-never-printed"
ENDPOINT = {"id": "e-1", "name": "shop db", "kind": "postgres", "collection_id": "c-1"}


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class FakeGateway:
    """Answers `(method, path)` from `routes`: (status, json body). Records every request."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        self.routes[(method, path)] = (status, body)


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    fake = FakeGateway()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urlsplit(self.path)
            size = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(size) if size else b""
            fake.seen.append(
                Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    json.loads(raw) if raw else None,
                    self.headers.get("authorization"),
                )
            )
            status, body = fake.routes.get(
                (self.command, parts.path),
                (404, {"error": {"code": "E_NOT_FOUND", "message": "no such route"}}),
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _any

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.answer("GET", "/endpoints", 200, [ENDPOINT])
    yield fake
    server.shutdown()
    server.server_close()


def run(gateway: FakeGateway, *args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(
        app,
        ["--url", gateway.url, *args],
        env={"FRESHET_TOKEN": TOKEN, "FRESHET_GATEWAY_URL": "http://127.0.0.1:1"},
        input=input,
    )
    assert TOKEN not in result.output
    return result


def test_preview_of_one_dataset_posts_to_its_preview_route(gateway: FakeGateway) -> None:
    gateway.answer("POST", "/datasets/d-1/preview", 202, {"status": "requested", "id": "d-1"})

    result = run(gateway, "previews", "refresh", "d-1")

    assert result.exit_code == 0, result.output
    assert [(s.method, s.path) for s in gateway.seen] == [("POST", "/datasets/d-1/preview")]
    assert gateway.seen[0].authorization == f"Bearer {TOKEN}"
    assert "requested" in result.output


def test_previews_of_an_endpoint_request_every_dataset_and_report_each(
    gateway: FakeGateway,
) -> None:
    datasets = [
        {"id": "d-1", "schema_name": "shop", "name": "orders"},
        {"id": "d-2", "schema_name": "shop", "name": "customers"},
    ]
    gateway.answer("GET", "/datasets", 200, datasets)
    gateway.answer("POST", "/datasets/d-1/preview", 202, {"status": "requested"})
    gateway.answer(
        "POST",
        "/datasets/d-2/preview",
        409,
        {"error": {"code": "E_PREVIEW_DISABLED", "message": "previews are off"}},
    )

    result = run(gateway, "previews", "refresh-endpoint", "shop db")

    assert result.exit_code == 1  # one failed
    listing = next(s for s in gateway.seen if s.path == "/datasets")
    assert listing.query["endpoint_id"] == ["e-1"]
    posted = [s.path for s in gateway.seen if s.method == "POST"]
    assert posted == ["/datasets/d-1/preview", "/datasets/d-2/preview"]
    assert "shop.orders" in result.output
    assert "E_PREVIEW_DISABLED" in result.output


def test_refresh_of_one_table_uses_the_table_route_with_its_options(gateway: FakeGateway) -> None:
    path = "/connections/shop%20db/tables/my%2Fschema/orders/refresh"
    gateway.answer("POST", "/connections/shop db/tables/my/schema/orders/refresh", 500, {})
    gateway.answer("POST", path, 202, {"refresh_id": "r-9", "status": "running"})

    result = run(
        gateway, "refreshes", "start", "e-1", "--table", "my/schema.orders", "--async", "--force"
    )

    # The name and the schema are sent encoded, so no name can change the path.
    assert result.exit_code == 0, result.output
    post = next(s for s in gateway.seen if s.method == "POST")
    assert post.query == {"async": ["true"], "force": ["true"]}
    assert "r-9" in result.output


def test_refresh_of_an_endpoint_posts_the_tables_and_concurrency(gateway: FakeGateway) -> None:
    gateway.answer(
        "POST", "/connections/shop%20db/refresh", 200, {"results": [], "status": "completed"}
    )

    result = run(
        gateway,
        "refreshes",
        "start",
        "shop db",
        "--table",
        "shop.a",
        "--table",
        "shop.b",
        "--concurrency",
        "3",
    )

    assert result.exit_code == 0, result.output
    post = next(s for s in gateway.seen if s.method == "POST")
    assert post.body == {"tables": ["shop.a", "shop.b"], "concurrency": 3}
    assert post.query == {}


def test_refresh_status_waits_until_the_job_ends(gateway: FakeGateway) -> None:
    gateway.answer("GET", "/refresh/r-1", 200, {"id": "r-1", "status": "failed", "errors": ["x"]})

    result = run(gateway, "--json", "refreshes", "status", "r-1", "--wait")

    assert result.exit_code == 1  # failed
    assert json.loads(result.output)["status"] == "failed"


def test_a_table_that_is_not_schema_dot_table_is_a_usage_error(gateway: FakeGateway) -> None:
    result = run(gateway, "refreshes", "start", "e-1", "--table", "orders")

    assert result.exit_code == 2
    assert not [s for s in gateway.seen if s.method == "POST"]


def test_gateway_errors_print_code_and_details_and_exit_1(gateway: FakeGateway) -> None:
    gateway.answer(
        "POST",
        "/collections/c-1/trigger",
        409,
        {"error": {"code": "E_COLLECTION_IN_PROGRESS", "message": "a run is active"}},
    )

    result = run(gateway, "runs", "trigger", "c-1")

    assert result.exit_code == 1
    assert "error: E_COLLECTION_IN_PROGRESS: a run is active" in result.output


def test_retry_triggers_the_runs_collection_with_its_filters(gateway: FakeGateway) -> None:
    filters = {"include_schemas": ["shop"], "include_tables": ["orders"]}
    gateway.answer(
        "GET", "/runs/r-1", 200, {"id": "r-1", "collection_id": "c-1", "filters": filters}
    )
    gateway.answer(
        "POST", "/collections/c-1/trigger", 202, {"id": "r-2", "status": "QUEUED", "error": None}
    )

    result = run(gateway, "runs", "retry", "r-1")

    assert result.exit_code == 0, result.output
    post = next(s for s in gateway.seen if s.method == "POST")
    assert post.body == {"filters": filters}
    assert "r-2" in result.output


def test_purge_asks_first(gateway: FakeGateway) -> None:
    gateway.answer("POST", "/dead-letters/purge", 200, {"purged": 2})

    refused = run(gateway, "dead-letters", "purge", input="n\n")
    assert refused.exit_code == 1
    assert not [s for s in gateway.seen if s.method == "POST"]

    agreed = run(gateway, "dead-letters", "purge", "--topic", "freshet.run.completed", "--yes")
    assert agreed.exit_code == 0, agreed.output
    assert [s.body for s in gateway.seen if s.method == "POST"] == [
        {"topic": "freshet.run.completed"}
    ]


def test_no_answer_exits_3_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["--url", "http://127.0.0.1:1", "runs", "list"])

    assert result.exit_code == 3
    assert "E_UNREACHABLE" in result.output
