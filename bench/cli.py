"""`python -m bench`: run the benchmarks, print the figures, write var/bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    collector_throughput,
    isolation,
    preview_fanout,
    preview_latency,
    query,
    refresh,
    scheduler_fires,
    ui_refreshes,
)
from bench.report import render
from bench.sources import (
    create_many_table_source,
    create_one_table_source,
    create_two_table_source,
)
from bench.stack import BenchStack, catalog_kind, make_stack, postgres_catalog, stop_stack
from freshet.devstack.testing import LOCAL_POSTGRES
from freshet.devstack.up import SERVICES
from freshet.kit.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "var" / "bench" / "results.json"
COUNTS = ("runs", "endpoints", "previews", "isolation_runs", "healthy", "hanging", "fanout_tables")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Freshet throughput and latency figures. Starts its own broker and services "
        "(temp data folder, free ports) and stops them when done, on error or on Ctrl-C.",
    )
    parser.add_argument("--runs", type=int, default=1000, help="collector runs (default 1000)")
    parser.add_argument(
        "--endpoints",
        type=int,
        default=200,
        help="endpoints the runs are spread over (200). Runs execute in the background, so a "
        "request for a collection whose previous run is still active is SKIPPED, as any "
        "overlapping outside request is; with 200 a collection's requests are far enough apart",
    )
    parser.add_argument(
        "--isolation-runs",
        type=int,
        default=200,
        help="healthy runs per phase of the isolation scenario (200)",
    )
    parser.add_argument(
        "--healthy",
        type=int,
        default=None,
        help="healthy endpoints of the isolation scenario (default: one per run, so no request "
        "finds its collection's previous run still active and is SKIPPED)",
    )
    parser.add_argument(
        "--hanging",
        type=int,
        default=5,
        help="sources that accept a connection and never answer, in the isolation scenario (5); "
        "fewer than FRESHET_MAX_CONCURRENT_RUNS",
    )
    parser.add_argument(
        "--previews", type=int, default=30, help="trigger -> preview repetitions (30)"
    )
    parser.add_argument(
        "--schedules", type=int, default=10_000, help="schedules of the scheduler scenario (10000)"
    )
    parser.add_argument(
        "--schedule-minutes",
        type=int,
        default=3,
        help="simulated minutes the schedules fire for, once a minute each (3)",
    )
    parser.add_argument(
        "--fire-batch", type=int, default=500, help="ticks fired per transaction (500)"
    )
    parser.add_argument(
        "--fanout-tables",
        type=int,
        default=1000,
        help="small tables of the one endpoint whose previews the fan-out scenario measures (1000)",
    )
    parser.add_argument(
        "--poll-interval-ms",
        type=float,
        default=2.0,
        help="how often the preview scenario reads the catalog (2 ms)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=None,
        help="FRESHET_FETCH_MAX_WAIT_MS for the services (default: the services' own, 10); "
        "500 is aiokafka's default",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="use a PostgreSQL catalog: a server URL whose user may CREATE DATABASE, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres; each scenario gets a scratch database, "
        "dropped afterwards (default: a SQLite catalog in the temp folder)",
    )
    parser.add_argument(
        "--refresh-rows",
        type=int,
        default=5_000_000,
        help="rows of the PostgreSQL table the refresh scenario refreshes (5,000,000; fewer "
        "for a quick run)",
    )
    parser.add_argument(
        "--refresh-rounds", type=int, default=2, help="measured runs of floor and refresh (2)"
    )
    parser.add_argument(
        "--ui-jobs",
        type=int,
        default=200_000,
        help="finished refresh jobs in the catalog of the ui-refreshes scenario (200,000)",
    )
    parser.add_argument(
        "--ui-tables", type=int, default=5, help="tables per job of ui-refreshes (5)"
    )
    parser.add_argument(
        "--ui-open-jobs", type=int, default=50, help="running jobs of ui-refreshes (50)"
    )
    parser.add_argument(
        "--refresh-batch-rows",
        type=int,
        default=int(os.environ.get("FRESHET_REFRESH_BATCH_ROWS", _default("refresh_batch_rows"))),
        help="Arrow batch size of the refresh (FRESHET_REFRESH_BATCH_ROWS)",
    )
    parser.add_argument(
        "--refresh-source",
        metavar="URL",
        default=LOCAL_POSTGRES,
        help="PostgreSQL server for the refresh scenario's scratch source database "
        f"(default {LOCAL_POSTGRES})",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=200,
        help="queries per phase of the query scenario (quiet, then during refreshes; 200)",
    )
    parser.add_argument(
        "--query-rows",
        type=int,
        default=1_000_000,
        help="rows of the PostgreSQL table the query scenario queries and refreshes (1,000,000)",
    )
    parser.add_argument(
        "--only",
        choices=[*SCENARIOS, *IN_PROCESS],
        action="append",
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=240.0, help="give up a measured phase after this"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the temp data folder (logs, catalog) even when everything went well",
    )
    args = parser.parse_args(argv)
    if args.healthy is None:
        args.healthy = args.isolation_runs
    if min(getattr(args, n) for n in COUNTS) < 1:
        parser.error(f"{', '.join('--' + n.replace('_', '-') for n in COUNTS)} must be at least 1")
    slots = int(os.environ.get("FRESHET_MAX_CONCURRENT_RUNS", _default("max_concurrent_runs")))
    if args.hanging >= slots:
        parser.error(
            f"--hanging {args.hanging} would hold all {slots} run slots of the collector "
            "(FRESHET_MAX_CONCURRENT_RUNS): that is backpressure by design, not isolation"
        )
    return args


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def settings_in_effect(args: argparse.Namespace, extra_env: dict[str, str]) -> dict[str, Any]:
    """The settings that matter to the figures, as the services will see them."""
    env = {**os.environ, **extra_env}

    def setting(name: str) -> dict[str, Any]:
        var = f"FRESHET_{name.upper()}"
        return {
            "env": var,
            "value": env.get(var, str(_default(name))),
            "default": _default(name),
            "source": "--fetch-max-wait-ms"
            if var in extra_env
            else "environment"
            if var in os.environ
            else "default",
        }

    return {
        "fetch_max_wait_ms": setting("fetch_max_wait_ms"),
        "relay_poll_interval_s": setting("relay_poll_interval_s"),
        "relay_batch_size": setting("relay_batch_size"),
        "log_level": setting("log_level"),
        "max_concurrent_runs": setting("max_concurrent_runs"),
        "source_timeout_s": setting("source_timeout_s"),
        "catalog": "postgresql (scratch database per scenario)" if args.postgres else "sqlite",
        "broker": "embedded Tansu (memory storage), one per scenario",
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Scenario:
    """One benchmark: what its stack runs, and what it measures on it."""

    result_key: str  # its figures' key in results.json
    folder: str  # its stack's data folder, under the bench's temp folder
    services: tuple[str, ...]
    started: str  # what the stack starts, for the progress lines
    measure: Callable[[argparse.Namespace, BenchStack, str], dict[str, Any]]
    # Settings this scenario's services run with, on top of the bench's own.
    env: dict[str, str] = field(default_factory=dict)


def measure_collector(args: argparse.Namespace, stack: BenchStack, _token: str) -> dict[str, Any]:
    source = create_two_table_source(stack.data_dir / "sources" / "two-tables.db")
    result = asyncio.run(
        collector_throughput.run(
            stack,
            runs=args.runs,
            endpoints=args.endpoints,
            source=source,
            timeout_s=args.timeout_s,
            progress=say,
        )
    )
    say(f"collector throughput: {result['runs_completed']} runs in {result['total_s']:.2f}s")
    return result


def measure_preview(args: argparse.Namespace, stack: BenchStack, token: str) -> dict[str, Any]:
    source = create_one_table_source(stack.data_dir / "sources" / "one-table.db")
    return asyncio.run(
        preview_latency.run(
            stack,
            token,
            iterations=args.previews,
            source=source,
            poll_interval_s=args.poll_interval_ms / 1000.0,
            timeout_s=min(args.timeout_s, 60.0),
            progress=say,
        )
    )


def measure_preview_fanout(
    args: argparse.Namespace, stack: BenchStack, token: str
) -> dict[str, Any]:
    source = create_many_table_source(
        stack.data_dir / "sources" / "many-tables.db", args.fanout_tables
    )
    result = asyncio.run(
        preview_fanout.run(
            stack,
            token,
            tables=args.fanout_tables,
            source=source,
            timeout_s=args.timeout_s,
            progress=say,
        )
    )
    say(
        f"preview fan-out: {result['tables']} previews, {result['previews_per_s']} per second, "
        f"{result['run_completed_to_last_persisted_s']}s from RunCompleted to the last"
    )
    return result


def measure_isolation(args: argparse.Namespace, stack: BenchStack, _token: str) -> dict[str, Any]:
    source = create_two_table_source(stack.data_dir / "sources" / "two-tables.db")
    return asyncio.run(
        isolation.run(
            stack,
            runs=args.isolation_runs,
            healthy=args.healthy,
            hanging=args.hanging,
            source=source,
            # Healthy runs held up behind the hanging ones would wait 30 s or more (the
            # connector's connect timeout): a minute is plenty to tell, without hanging too.
            timeout_s=min(args.timeout_s, 60.0),
            progress=say,
        )
    )


def measure_scheduler(args: argparse.Namespace, stack: BenchStack, _token: str) -> dict[str, Any]:
    # Scratch catalogs are made before the event loop starts (their helpers run one of their own).
    with contextlib.ExitStack() as scratch:
        catalogs = {
            layout: scratch.enter_context(postgres_catalog(args.postgres))
            or f"sqlite:///{stack.data_dir / f'fires-{layout}.db'}"
            for layout in scheduler_fires.LAYOUTS
        }
        return asyncio.run(
            scheduler_fires.run(
                stack,
                catalogs=catalogs,
                schedules=args.schedules,
                minutes=args.schedule_minutes,
                batch_size=args.fire_batch,
                progress=say,
            )
        )


def measure_query(args: argparse.Namespace, stack: BenchStack, token: str) -> dict[str, Any]:
    return query.run(
        stack,
        token,
        server=args.refresh_source,
        rows=args.query_rows,
        queries=args.queries,
        progress=say,
    )


BROKER_AND_COLLECTOR = "broker + collector"
# Scenarios without a stack of services, run after those with one.
IN_PROCESS = ("refresh", "ui-refreshes")
SCENARIOS: dict[str, Scenario] = {
    "collector": Scenario(
        "collector_throughput",
        "collector-throughput",
        ("collector",),
        BROKER_AND_COLLECTOR,
        measure_collector,
    ),
    "preview": Scenario(
        "preview_latency",
        "preview-latency",
        tuple(SERVICES),
        "broker + all five services",
        measure_preview,
        # Every repetition re-previews the same dataset: the per-dataset throttle stays out.
        env={"FRESHET_PREVIEW_DATASET_INTERVAL_S": "0"},
    ),
    "preview-fanout": Scenario(
        "preview_fanout",
        "preview-fanout",
        ("gateway", "collector", "previewer"),
        "broker + gateway, collector, previewer",
        measure_preview_fanout,
        env=preview_fanout.ENV,
    ),
    "isolation": Scenario(
        "isolation", "isolation", ("collector",), BROKER_AND_COLLECTOR, measure_isolation
    ),
    "scheduler": Scenario(
        "scheduler", "scheduler", ("scheduler",), "broker + scheduler", measure_scheduler
    ),
    "query": Scenario(
        "query",
        "query",
        ("gateway", "collector", "refresher"),
        "broker + gateway, collector, refresher",
        measure_query,
    ),
}


def run_scenario(
    name: str, args: argparse.Namespace, root: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Measure one scenario on a stack of its own, stopped afterwards whatever happens."""
    scenario = SCENARIOS[name]
    with postgres_catalog(args.postgres) as catalog:
        stack = make_stack(
            root / scenario.folder,
            services=scenario.services,
            database_url=catalog,
            extra_env={**scenario.env, **env},
        )
        try:
            label = scenario.result_key.replace("_", " ")
            say(f"{label}: starting {scenario.started} in {stack.data_dir}")
            started = time.perf_counter()
            token, _demo = stack.start()
            say(f"ready in {time.perf_counter() - started:.1f}s")
            result = scenario.measure(args, stack, token)
            result["catalog"] = catalog_kind(stack.catalog_url)
            result["services"] = list(stack.services)
            result["exited_services"] = stack.dead_services()
            result["logs"] = str(stack.data_dir / "logs")
            return result
        finally:
            say(f"stopping {scenario.started}")
            stop_stack(stack)


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so every `finally` stops what it started.
    raise KeyboardInterrupt


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    extra_env: dict[str, str] = {}
    if args.fetch_max_wait_ms is not None:
        extra_env["FRESHET_FETCH_MAX_WAIT_MS"] = str(args.fetch_max_wait_ms)
    scenarios = args.only or [*SCENARIOS, *IN_PROCESS]
    root = Path(tempfile.mkdtemp(prefix="freshet-bench-"))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "settings": settings_in_effect(args, extra_env),
        "parameters": {
            "runs": args.runs,
            "endpoints": args.endpoints,
            "previews": args.previews,
            "isolation_runs": args.isolation_runs,
            "healthy": args.healthy,
            "hanging": args.hanging,
            "fanout_tables": args.fanout_tables,
            "poll_interval_ms": args.poll_interval_ms,
            "schedules": args.schedules,
            "schedule_minutes": args.schedule_minutes,
            "refresh_rows": args.refresh_rows,
            "queries": args.queries,
            "query_rows": args.query_rows,
            "ui_jobs": args.ui_jobs,
            "scenarios": scenarios,
        },
        "data_dir": str(root),
    }
    started = time.perf_counter()
    status = 0
    try:
        for name in SCENARIOS:
            if name in scenarios:
                results[SCENARIOS[name].result_key] = run_scenario(name, args, root, extra_env)
        if "refresh" in scenarios:
            # No stack: the refresher's read-and-write path in a process of its own.
            results["refresh"] = refresh.run(
                args.refresh_source,
                rows=args.refresh_rows,
                rounds=args.refresh_rounds,
                batch_rows=args.refresh_batch_rows,
                progress=say,
            )
        if "ui-refreshes" in scenarios:
            # No stack either: the gateway app in this process, over a catalog it fills.
            results["ui_refreshes"] = ui_refreshes.run(
                lambda: postgres_catalog(args.postgres),
                root / "ui-refreshes",
                jobs=args.ui_jobs,
                tables=args.ui_tables,
                open_jobs=args.ui_open_jobs,
                progress=say,
            )
    except KeyboardInterrupt:
        say("interrupted; everything the bench started is stopped")
        results["error"] = "interrupted"
        status = 130
    except Exception as exc:
        say(f"failed: {type(exc).__name__}: {exc}")
        results["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    results["duration_s"] = round(time.perf_counter() - started, 1)
    incomplete = any(
        isinstance(results.get(k), dict) and results[k].get("complete") is False
        for k in ("collector_throughput", "isolation")
    )
    keep = args.keep_data or status != 0 or incomplete
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
        results["data_dir"] = f"{root} (removed; --keep-data keeps it)"
    write_results(args.output, results)
    sys.stdout.write(render(results))
    print(f"\nresults written to {args.output}", flush=True)
    return status or (1 if incomplete else 0)
