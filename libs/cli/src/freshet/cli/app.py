"""`freshet`: operate a running Freshet through its gateway.

    freshet runs list --status FAILED
    freshet runs retry <run id> --wait
    freshet dead-letters replay --all
    freshet up                      # the whole system on this machine (what `make up` runs)

The gateway URL and token come from options or `FRESHET_GATEWAY_URL` / `FRESHET_TOKEN` /
`FRESHET_TOKEN_FILE` (default: the development token `make up` wrote). Errors print the
gateway's stable code and message and exit with status 1 (2 for usage, 3 when the gateway
does not answer). `--json` prints the gateway's answer as it came.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import typer

from freshet.cli import output
from freshet.cli.client import Gateway, GatewayError
from freshet.cli.settings import CliSettings

FINAL_RUN_STATUSES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"}
FINAL_REFRESH_STATUSES = {"succeeded", "failed", "skipped", "partial", "completed", "cancelled"}
RUN_COLUMNS = ("id", "status", "trigger_source", "requested_at", "duration_ms", "error")

app = typer.Typer(no_args_is_help=True, help=__doc__.split("\n\n")[0])
endpoints_app = typer.Typer(no_args_is_help=True, help="Registered endpoints.")
collections_app = typer.Typer(no_args_is_help=True, help="Collections (one per endpoint).")
runs_app = typer.Typer(no_args_is_help=True, help="Collection runs: list, trigger, cancel, retry.")
previews_app = typer.Typer(no_args_is_help=True, help="Preview rows of datasets.")
refreshes_app = typer.Typer(no_args_is_help=True, help="Parquet cache refreshes.")
dead_letters_app = typer.Typer(no_args_is_help=True, help="Messages consumers gave up on.")
schedules_app = typer.Typer(no_args_is_help=True, help="What the scheduler fires.")
for sub, name in (
    (endpoints_app, "endpoints"),
    (collections_app, "collections"),
    (runs_app, "runs"),
    (previews_app, "previews"),
    (refreshes_app, "refreshes"),
    (dead_letters_app, "dead-letters"),
    (schedules_app, "schedules"),
):
    app.add_typer(sub, name=name)


@dataclass
class Context:
    gateway: Gateway
    as_json: bool


def ctx_of(ctx: typer.Context) -> Context:
    state: Context = ctx.obj
    return state


@app.callback()
def connect(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Gateway URL (env FRESHET_GATEWAY_URL).", show_default=False)
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Bearer token (env FRESHET_TOKEN, FRESHET_TOKEN_FILE).", hidden=True),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    if ctx.invoked_subcommand == "up":
        return
    settings = CliSettings()
    gateway = Gateway(
        url or settings.gateway_url, token or settings.bearer(), settings.cli_timeout_s
    )
    ctx.obj = Context(gateway=gateway, as_json=as_json)
    ctx.call_on_close(gateway.close)


def fail(error: GatewayError) -> typer.Exit:
    typer.echo(f"error: {error.code}: {error.message}", err=True)
    for detail in error.details or []:
        if isinstance(detail, dict):
            loc = ".".join(str(p) for p in detail.get("loc", []))
            typer.echo(f"  {loc}: {detail.get('msg', '')}", err=True)
    return typer.Exit(3 if error.code == "E_UNREACHABLE" else 1)


def call(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return ctx_of(ctx).gateway.call(method, path, **kwargs)
    except GatewayError as error:
        raise fail(error) from None


def show(ctx: typer.Context, data: Any, columns: tuple[str, ...] | None = None) -> None:
    if ctx_of(ctx).as_json:
        output.emit_json(data)
    elif isinstance(data, list):
        output.table(data, columns or tuple(data[0]) if data else ())
    elif isinstance(data, dict):
        output.record(data, columns)
    else:
        typer.echo(data)


def parse_json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise typer.BadParameter(f"{name} must be JSON") from None


def wait_for(ctx: typer.Context, path: str, final: set[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current: dict[str, Any] = call(ctx, "GET", path)
        if str(current.get("status")) in final:
            return current
        if time.monotonic() > deadline:
            typer.echo(f"still {current.get('status')} after {timeout_s:g}s", err=True)
            raise typer.Exit(1)
        time.sleep(0.5)


def find_endpoint(ctx: typer.Context, ref: str) -> dict[str, Any]:
    """An endpoint given by id or by name."""
    for endpoint in call(ctx, "GET", "/endpoints"):
        if ref in (endpoint["id"], endpoint["name"]):
            return dict(endpoint)
    raise fail(GatewayError(404, "E_ENDPOINT_NOT_FOUND", f"no endpoint {ref!r}"))


def endpoint_id(ctx: typer.Context, ref: str) -> str:
    return str(find_endpoint(ctx, ref)["id"])


Wait = Annotated[bool, typer.Option("--wait", help="Wait until the run finishes.")]
WaitTimeout = Annotated[float, typer.Option(help="Seconds --wait waits at most.")]
Filters = Annotated[
    str | None, typer.Option(help='Run filters as JSON, e.g. \'{"include_tables": ["orders"]}\'.')
]


# Endpoints and collections.


@endpoints_app.command("list")
def endpoints_list(ctx: typer.Context) -> None:
    show(ctx, call(ctx, "GET", "/endpoints"), ("id", "name", "kind", "collection_id", "labels"))


@endpoints_app.command("show")
def endpoints_show(ctx: typer.Context, endpoint: str) -> None:
    """ENDPOINT is an id or a name."""
    show(ctx, call(ctx, "GET", f"/endpoints/{endpoint_id(ctx, endpoint)}"))


@endpoints_app.command("test")
def endpoints_test(ctx: typer.Context, endpoint: str) -> None:
    """Connect with the stored settings and run a trivial query."""
    show(ctx, call(ctx, "POST", f"/endpoints/{endpoint_id(ctx, endpoint)}/test"))


@collections_app.command("list")
def collections_list(ctx: typer.Context, endpoint: str | None = None) -> None:
    params = {"endpoint_id": endpoint_id(ctx, endpoint) if endpoint else None}
    columns = ("id", "endpoint_id", "is_enabled", "schedule_cron", "next_fire_at")
    show(ctx, call(ctx, "GET", "/collections", params=params), columns)


@collections_app.command("show")
def collections_show(ctx: typer.Context, collection_id: str) -> None:
    show(ctx, call(ctx, "GET", f"/collections/{collection_id}"))


# Runs.


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    endpoint: str | None = None,
    collection: str | None = None,
    status: Annotated[str | None, typer.Option(help="QUEUED, RUNNING, FAILED, ...")] = None,
    first: int = 50,
) -> None:
    params = {
        "endpoint_id": endpoint_id(ctx, endpoint) if endpoint else None,
        "collection_id": collection,
        "status": status.upper() if status else None,
        "first": first,
    }
    show(ctx, call(ctx, "GET", "/runs", params=params), RUN_COLUMNS)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: str) -> None:
    show(ctx, call(ctx, "GET", f"/runs/{run_id}"))


@collections_app.command("trigger")
@runs_app.command("trigger")
def runs_trigger(
    ctx: typer.Context,
    collection_id: str,
    filters: Filters = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = 600,
) -> None:
    """Queue a run of a collection (E_COLLECTION_IN_PROGRESS while one is active)."""
    body = {"filters": parse_json_option(filters, "--filters")} if filters else None
    run = call(ctx, "POST", f"/collections/{collection_id}/trigger", json=body)
    if wait:
        run = wait_for(ctx, f"/runs/{run['id']}", FINAL_RUN_STATUSES, wait_timeout)
    show(ctx, run, None if ctx_of(ctx).as_json else RUN_COLUMNS)
    if wait and run["status"] == "FAILED":
        raise typer.Exit(1)


@runs_app.command("cancel")
def runs_cancel(ctx: typer.Context, run_id: str) -> None:
    """Cancel a QUEUED or RUNNING run (E_RUN_FINISHED when it already finished)."""
    show(ctx, call(ctx, "POST", f"/runs/{run_id}/cancel"), RUN_COLUMNS)


@runs_app.command("retry")
def runs_retry(
    ctx: typer.Context, run_id: str, wait: Wait = False, wait_timeout: WaitTimeout = 600
) -> None:
    """A new run of the same collection with the same filters."""
    run = call(ctx, "GET", f"/runs/{run_id}")
    if run.get("collection_id") is None:
        raise fail(GatewayError(409, "E_COLLECTION_NOT_FOUND", "the run's collection is gone"))
    filters = json.dumps(run["filters"]) if run.get("filters") else None
    runs_trigger(ctx, run["collection_id"], filters, wait, wait_timeout)


# Previews (issue 5's routes).


@previews_app.command("refresh")
def previews_refresh(ctx: typer.Context, dataset_id: str) -> None:
    """Sample one dataset's preview again (POST /datasets/{id}/preview)."""
    show(ctx, call(ctx, "POST", f"/datasets/{dataset_id}/preview"))


@previews_app.command("refresh-endpoint")
def previews_refresh_endpoint(ctx: typer.Context, endpoint: str) -> None:
    """Request a preview of every dataset of an endpoint (id or name)."""
    datasets = call(
        ctx, "GET", "/datasets", params={"endpoint_id": endpoint_id(ctx, endpoint), "first": 1000}
    )
    results: list[dict[str, Any]] = []
    failed = 0
    for dataset in datasets:
        name = f"{dataset.get('schema_name') or ''}.{dataset['name']}".lstrip(".")
        try:
            answer = ctx_of(ctx).gateway.post(f"/datasets/{dataset['id']}/preview")
            status = answer.get("status", "requested") if isinstance(answer, dict) else "requested"
            results.append({"dataset_id": dataset["id"], "dataset": name, "result": status})
        except GatewayError as error:
            if error.code == "E_UNREACHABLE":
                raise fail(error) from None
            failed += 1
            results.append({"dataset_id": dataset["id"], "dataset": name, "result": error.code})
    show(ctx, results, ("dataset_id", "dataset", "result"))
    if failed:
        raise typer.Exit(1)


# Refreshes (issue 6's routes).


@refreshes_app.command("start")
def refreshes_start(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (or id).")],
    table: Annotated[
        list[str] | None, typer.Option(help="schema.table; repeat for several; all when absent.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Tables refreshed at once.")] = None,
    force: Annotated[bool, typer.Option(help="Even if synced recently.")] = False,
    run_async: Annotated[bool, typer.Option("--async", help="Do not wait (202).")] = False,
) -> None:
    """Refresh one table, the listed ones, or every cached table of an endpoint."""
    name = quote(str(find_endpoint(ctx, endpoint)["name"]), safe="")
    tables = table or []
    if len(tables) == 1:
        schema, _, table_name = tables[0].rpartition(".")
        if not schema or not table_name:
            raise typer.BadParameter("--table must be schema.table")
        path = f"/connections/{name}/tables/{quote(schema, safe='')}/{quote(table_name, safe='')}"
        params = {"async": "true" if run_async else None, "force": "true" if force else None}
        show(ctx, call(ctx, "POST", f"{path}/refresh", params=params))
        return
    body: dict[str, Any] = {}
    if tables:
        body["tables"] = tables
    if concurrency is not None:
        body["concurrency"] = concurrency
    params = {"async": "true" if run_async else None, "force": "true" if force else None}
    show(ctx, call(ctx, "POST", f"/connections/{name}/refresh", json=body, params=params))


@refreshes_app.command("status")
def refreshes_status(
    ctx: typer.Context, refresh_id: str, wait: Wait = False, wait_timeout: WaitTimeout = 600
) -> None:
    """A refresh job's status (GET /refresh/{id}); --wait until it ends."""
    path = f"/refresh/{quote(refresh_id, safe='')}"
    job = (
        wait_for(ctx, path, FINAL_REFRESH_STATUSES, wait_timeout)
        if wait
        else call(ctx, "GET", path)
    )
    show(ctx, job)
    if str(job.get("status")) in ("failed", "partial"):
        raise typer.Exit(1)


# Dead letters (admin).

DEAD_LETTER_COLUMNS = ("id", "topic", "reason", "event_type", "failed_at", "replays", "error")


@dead_letters_app.command("list")
def dead_letters_list(
    ctx: typer.Context,
    topic: str | None = None,
    limit: int = 100,
    after: Annotated[str | None, typer.Option(help="Continue after this id.")] = None,
) -> None:
    found = call(
        ctx, "GET", "/dead-letters", params={"topic": topic, "limit": limit, "after": after}
    )
    if not ctx_of(ctx).as_json:
        found = [{**d, "replays": len(d["replays"])} for d in found]
    show(ctx, found, DEAD_LETTER_COLUMNS)


@dead_letters_app.command("replay")
def dead_letters_replay(
    ctx: typer.Context,
    dead_letter_id: Annotated[str | None, typer.Argument(help="One message's id.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every one not purged.")] = False,
    topic: Annotated[str | None, typer.Option(help="With --all: only this topic's.")] = None,
    include_replayed: Annotated[bool, typer.Option(help="With --all: replay again.")] = False,
) -> None:
    """Re-publish dead letters to their original topics (consumers are idempotent)."""
    if (dead_letter_id is None) == (not replay_all):
        raise typer.BadParameter("give one id, or --all")
    if dead_letter_id is not None:
        replayed = call(ctx, "POST", f"/dead-letters/{quote(dead_letter_id, safe='')}/replay")
        show(ctx, replayed if ctx_of(ctx).as_json else {"replayed": replayed["id"]})
        return
    body = {"topic": topic, "include_replayed": include_replayed}
    show(ctx, call(ctx, "POST", "/dead-letters/replay", json=body))


@dead_letters_app.command("purge")
def dead_letters_purge(
    ctx: typer.Context,
    topic: str | None = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Hide every dead letter there is now (of a topic) from the list, for good."""
    if not yes:
        typer.confirm(f"Purge the dead letters of {topic or 'every topic'}?", abort=True)
    show(ctx, call(ctx, "POST", "/dead-letters/purge", json={"topic": topic}))


# Schedules.


@schedules_app.command("list")
def schedules_list(ctx: typer.Context) -> None:
    columns = ("id", "kind", "cron", "interval_s", "paused", "paused_by", "next_fire_at")
    show(ctx, call(ctx, "GET", "/schedules"), columns)


@schedules_app.command("pause")
def schedules_pause(ctx: typer.Context, schedule_id: str) -> None:
    """Hold a schedule: nothing fires until it is resumed."""
    show(ctx, call(ctx, "POST", f"/schedules/{quote(schedule_id, safe='')}/pause"))


@schedules_app.command("resume")
def schedules_resume(ctx: typer.Context, schedule_id: str) -> None:
    """Release a hold; the next fire is the first tick after now."""
    show(ctx, call(ctx, "POST", f"/schedules/{quote(schedule_id, safe='')}/resume"))


# The development stack.


@app.command()
def up() -> None:
    """Run the whole system on this machine (embedded broker, SQLite, five services, demo)."""
    from freshet.devstack.up import main as stack_main

    raise typer.Exit(stack_main())


def main() -> None:
    app(prog_name="freshet")
