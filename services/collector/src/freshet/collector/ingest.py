"""Ingest: what a source holds, from the built-in connector or an external command.

The external command is the seed's out-of-process ingestion step (its Spark CLI). It gets:
- argv as configured, with `{output}` replaced by the path it must write;
- environment: `FRESHET_OUTPUT_PATH`, `FRESHET_RUN_ID`, `FRESHET_ENDPOINT_ID`,
  `FRESHET_ENDPOINT_KIND`, `FRESHET_ENDPOINT_CONFIG` (JSON, no secrets) and one
  `FRESHET_SECRET_<NAME>` per endpoint secret — never argv, which `ps` shows to everyone;
- nothing else of the collector's environment but PATH, HOME, LANG and TZ.
It writes one JSON object per line to the output path, a dataset each (`IngestRecord`), and
exits 0. Its stderr is kept (last 2 KB, secrets removed) for the run's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import Mapping
from pathlib import Path

import stamina
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from freshet.connectors import (
    ColumnInfo,
    ConnectorError,
    ConnectorFactory,
    ForeignKeyInfo,
    TableInfo,
    sanitise,
)

MAX_RECORDS = 100_000
MAX_LINE_BYTES = 1024 * 1024
STDERR_TAIL_BYTES = 2048
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


class IngestError(Exception):
    """Ingestion failed; the message is safe to store and show (no secrets, no values)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class IngestColumn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=400)
    data_type: str = Field(default="unknown", max_length=200)
    nullable: bool = True


class IngestForeignKey(BaseModel):
    model_config = ConfigDict(extra="ignore")

    columns: list[str]
    referred_schema: str
    referred_table: str
    referred_columns: list[str]


class IngestRecord(BaseModel):
    """One dataset as an external ingestion command reports it."""

    model_config = ConfigDict(extra="ignore")

    schema_name: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=400)
    kind: str = Field(default="table", pattern="^(table|view)$")
    columns: list[IngestColumn] = Field(default_factory=list, max_length=5000)
    primary_key: list[str] = Field(default_factory=list)
    foreign_keys: list[IngestForeignKey] = Field(default_factory=list)
    row_estimate: int | None = Field(default=None, ge=0)

    def table_info(self) -> TableInfo:
        keys = set(self.primary_key)
        return TableInfo(
            schema_name=self.schema_name,
            name=self.name,
            kind="view" if self.kind == "view" else "table",
            columns=[
                ColumnInfo(
                    name=c.name,
                    data_type=c.data_type,
                    nullable=c.nullable,
                    ordinal=i,
                    is_primary_key=c.name in keys,
                )
                for i, c in enumerate(self.columns, start=1)
            ],
            primary_key=self.primary_key,
            foreign_keys=[ForeignKeyInfo(**fk.model_dump()) for fk in self.foreign_keys],
            row_estimate=self.row_estimate,
        )


async def discover(
    connect: ConnectorFactory,
    kind: str,
    config: Mapping[str, object],
    secrets: Mapping[str, str],
    *,
    attempts: int,
) -> list[TableInfo]:
    """The built-in path: introspect through the connector, retrying transient failures."""
    connector = connect(kind, config, secrets)
    async for attempt in stamina.retry_context(
        on=lambda e: isinstance(e, ConnectorError) and e.transient,
        attempts=attempts,
        timeout=None,
    ):
        with attempt:
            return await connector.introspect()
    raise AssertionError("unreachable")  # pragma: no cover


async def run_command(
    argv: list[str],
    *,
    workdir: Path,
    run_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    kind: str,
    config: Mapping[str, object],
    secrets: Mapping[str, str],
) -> list[TableInfo]:
    """Run an external ingestion command and read the datasets it wrote.

    Cancellation (the run's timeout, a cancel, shutdown) kills the command's whole process
    group, so nothing it started keeps running.
    """
    output = workdir / f"{run_id}.ndjson"
    await asyncio.to_thread(_fresh_output, output)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env |= {
        "FRESHET_OUTPUT_PATH": str(output),
        "FRESHET_RUN_ID": str(run_id),
        "FRESHET_ENDPOINT_ID": str(endpoint_id),
        "FRESHET_ENDPOINT_KIND": kind,
        "FRESHET_ENDPOINT_CONFIG": json.dumps(dict(config), default=str),
    }
    env |= {f"FRESHET_SECRET_{_env_name(name)}": value for name, value in secrets.items()}
    args = [arg.replace("{output}", str(output)) for arg in argv]
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise IngestError(
                f"ingestion command could not start: {type(exc).__name__} ({exc.strerror})"
            ) from None
        try:
            _, stderr = await proc.communicate()
        except asyncio.CancelledError:
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
            raise
        if proc.returncode != 0:
            tail = sanitise(stderr[-STDERR_TAIL_BYTES:].decode(errors="replace"), secrets)
            raise IngestError(
                f"ingestion command exited with status {proc.returncode}"
                + (f": {' '.join(tail.split())}" if tail.strip() else "")
            )
        return await asyncio.to_thread(read_records, output)
    finally:
        await asyncio.to_thread(output.unlink, missing_ok=True)


def read_records(path: Path) -> list[TableInfo]:
    """Parse the NDJSON a command wrote; errors name the line and field, never a value."""
    if not path.exists():
        raise IngestError("ingestion command wrote no output file")
    tables: list[TableInfo] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if len(line) > MAX_LINE_BYTES:
                raise IngestError(f"ingestion output line {number} is over {MAX_LINE_BYTES} bytes")
            if not line.strip():
                continue
            if len(tables) >= MAX_RECORDS:
                raise IngestError(f"ingestion output has more than {MAX_RECORDS} datasets")
            try:
                record = IngestRecord.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise IngestError(
                    f"ingestion output line {number} is invalid: {where} ({first['msg']})"
                ) from None
            tables.append(record.table_info())
    return sorted(tables, key=lambda t: (t.schema_name, t.name))


def _fresh_output(output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)


def _env_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
