"""The files connector: a folder of CSV and Parquet files, each file one dataset, read by DuckDB.

Datasets and names:

- Files ending in `.parquet`, `.csv`, `.csv.gz` or `.tsv` (any letter case) are datasets; the
  name is the file name without that extension (`orders.csv.gz` -> `orders`). When two files
  map to the same name, the first of parquet, csv, csv.gz, tsv wins (then the smaller file
  name); the others are not listed.
- schema_name is `files` for the folder itself. With `recursive: true`, a file in a sub-folder
  gets `files/<relative folder>` with `/` separators (`files/2024/january`); prefixing keeps a
  sub-folder called `files` from colliding with the top level.
- Hidden files and folders (names starting with `.`) and names that are not valid UTF-8 are
  ignored. Symlinks to files are followed only when the target lies inside the folder; symlinked
  sub-folders are never descended into (no loops, no escapes).
- A file DuckDB cannot read (corrupt Parquet, undetectable CSV dialect, bad encoding) is left
  out of `introspect` and logged by name only, never with its content; sampling it fails with a
  permanent ConnectorError.
- CSV columns come from DuckDB's sniffer; `csv_delimiter` and `csv_header` override it for
  `.csv`/`.csv.gz` files when it guesses wrong. `.tsv` files are always tab-separated.
- Tables have no keys; row_estimate is the Parquet footer's row count, None for CSV (counting
  would read the whole file).

Reading is fenced in: every operation uses a fresh in-memory DuckDB connection that may only
touch the configured folder (`allowed_directories` plus `enable_external_access = false`, which
DuckDB does not let anything undo), and `sample` looks the dataset up in a directory listing
instead of building a path from the caller's names, so `../x` or `/etc/passwd` is simply "table
not found". Glob characters in file names are escaped, so `a*.csv` reads only itself. Nothing
is written anywhere; timeouts and cancellation work as described in `duckdb_session`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Literal, TypeVar

import duckdb
import pyarrow as pa
from pydantic import BaseModel, Field

from freshet.connectors.batches import duckdb_batches, new_duckdb, stream_batches
from freshet.connectors.duckdb_session import CONNECT_CONFIG, Session, first_line, run_in_thread
from freshet.connectors.errors import ConnectorError, sanitise
from freshet.connectors.models import ColumnInfo, Sample, TableInfo
from freshet.connectors.sql import check_limit

T = TypeVar("T")

SCHEMA = "files"

Format = Literal["parquet", "csv", "tsv"]
# In order of precedence when two files share a name.
_EXTENSIONS: tuple[tuple[str, Format], ...] = (
    (".parquet", "parquet"),
    (".csv", "csv"),
    (".csv.gz", "csv"),
    (".tsv", "tsv"),
)
# DuckDB expands these in any path it reads; bracketed, each matches only itself.
_GLOB_ESCAPES = str.maketrans({"*": "[*]", "?": "[?]", "[": "[[]"})

_log = logging.getLogger(__name__)


class FilesConfig(BaseModel, extra="forbid", frozen=True):
    # No NUL: the OS cannot open such a path, and pathlib raises ValueError on sight of one.
    path: str = Field(min_length=1, pattern=r"^[^\x00]+$")
    recursive: bool = False
    # For .csv and .csv.gz files; None lets DuckDB's sniffer decide.
    csv_delimiter: str | None = Field(
        default=None, min_length=1, max_length=1, pattern=r"^[^\x00\r\n]$"
    )
    csv_header: bool | None = None


@dataclasses.dataclass(frozen=True, order=True)
class _Dataset:
    rank: int
    file_name: str
    name: str = dataclasses.field(compare=False)
    path: pathlib.Path = dataclasses.field(compare=False)
    format: Format = dataclasses.field(compare=False)


class FilesConnector:
    kind: str = "files"

    def __init__(
        self, config: FilesConfig, secrets: Mapping[str, str], *, timeout_s: float
    ) -> None:
        self._config = config
        self._path = pathlib.Path(config.path)
        self._secrets = dict(secrets)
        self._timeout_s = timeout_s

    async def test(self) -> None:
        def probe(session: Session, root: pathlib.Path) -> None:
            _scan(root, root)
            session.query("SELECT 1")

        await self._run(probe)

    async def introspect(self) -> list[TableInfo]:
        return await self._run(self._introspect)

    async def sample(self, schema_name: str, table: str, limit: int) -> Sample:
        check_limit(limit)

        def work(session: Session, root: pathlib.Path) -> Sample:
            directory = _directory_for(root, schema_name, recursive=self._config.recursive)
            dataset = None if directory is None else _scan(directory, root).get(table)
            if dataset is None:
                raise self._permanent(f"table not found: {schema_name}.{table}")
            source, params = self._reader(dataset)
            return session.sample(source, params, limit)

        return await self._run(work, label=f"{schema_name}.{table}")

    async def stream(
        self, schema_name: str, table: str, *, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        label = f"{schema_name}.{table}"

        def produce(cancelled: threading.Event) -> Iterator[pa.RecordBatch]:
            if not self._path.is_dir():
                raise self._permanent(f"folder not found: {self._path}")
            root = self._path.resolve()
            directory = _directory_for(root, schema_name, recursive=self._config.recursive)
            dataset = None if directory is None else _scan(directory, root).get(table)
            if dataset is None:
                raise self._permanent(f"table not found: {label}")
            source, params = self._reader(dataset)
            conn = new_duckdb()
            try:
                conn.execute("SET allowed_directories = ?", [[os.path.join(root, "")]])
                conn.execute("SET enable_external_access = false")
            except BaseException:
                conn.close()
                raise
            yield from duckdb_batches(
                conn, f"SELECT * FROM {source}", list(params), batch_rows, cancelled
            )

        def describe(exc: BaseException) -> ConnectorError:
            if isinstance(exc, ConnectorError):
                return exc
            if isinstance(exc, duckdb.Error):
                return self._error(exc, None, label)
            if isinstance(exc, OSError):
                return self._permanent(f"cannot read folder {self._path}: {exc.strerror or exc}")
            return self._permanent(f"cannot read {label}: {type(exc).__name__}")

        async for batch in stream_batches(produce, describe):
            yield batch

    def _introspect(self, session: Session, root: pathlib.Path) -> list[TableInfo]:
        tables: list[TableInfo] = []
        for schema_name, datasets in _walk(root, recursive=self._config.recursive):
            for dataset in datasets.values():
                try:
                    tables.append(self._table_info(session, schema_name, dataset))
                except duckdb.Error as exc:
                    if session.aborted:
                        raise
                    # Only the name and the kind of failure: DuckDB's message can quote lines
                    # of the file, which may be anything.
                    _log.warning(
                        "skipped unreadable file %s (%s)",
                        sanitise(f"{schema_name}/{dataset.file_name}", self._secrets),
                        type(exc).__name__,
                    )
        return sorted(tables, key=lambda t: (t.schema_name, t.name))

    def _table_info(self, session: Session, schema_name: str, dataset: _Dataset) -> TableInfo:
        source, params = self._reader(dataset)
        _, described = session.query(f"DESCRIBE SELECT * FROM {source}", params)
        row_estimate: int | None = None
        if dataset.format == "parquet":
            _, counted = session.query("SELECT sum(num_rows) FROM parquet_file_metadata(?)", params)
            row_estimate = None if counted[0][0] is None else int(counted[0][0])
        return TableInfo(
            schema_name=schema_name,
            name=dataset.name,
            kind="table",
            columns=[
                ColumnInfo(
                    name=str(name),
                    data_type=str(data_type),
                    nullable=null != "NO",
                    ordinal=position,
                    is_primary_key=False,
                )
                for position, (name, data_type, null, *_) in enumerate(described, start=1)
            ],
            primary_key=[],
            foreign_keys=[],
            row_estimate=row_estimate,
        )

    def _reader(self, dataset: _Dataset) -> tuple[str, list[object]]:
        """The table function call reading `dataset`, and its parameters."""
        path = str(dataset.path).translate(_GLOB_ESCAPES)
        if dataset.format == "parquet":
            return "read_parquet(?)", [path]
        options = ["auto_detect = true"]
        params: list[object] = [path]
        delimiter = "\t" if dataset.format == "tsv" else self._config.csv_delimiter
        if delimiter is not None:
            options.append("delim = ?")
            params.append(delimiter)
        if self._config.csv_header is not None:
            options.append("header = ?")
            params.append(self._config.csv_header)
        return f"read_csv(?, {', '.join(options)})", params

    async def _run(
        self, work: Callable[[Session, pathlib.Path], T], *, label: str | None = None
    ) -> T:
        return await run_in_thread(lambda cancelled: self._run_sync(work, cancelled, label))

    def _run_sync(
        self,
        work: Callable[[Session, pathlib.Path], T],
        cancelled: threading.Event,
        label: str | None,
    ) -> T:
        if not self._path.exists():
            raise self._permanent(f"folder not found: {self._path}")
        if not self._path.is_dir():
            raise self._permanent(f"path is not a folder: {self._path}")
        root = self._path.resolve()
        session: Session | None = None
        try:
            session = Session(
                duckdb.connect(config=dict(CONNECT_CONFIG)), self._timeout_s, cancelled
            )
            session.configure(
                [
                    # os.path.join adds the trailing separator that makes it a directory.
                    ("SET allowed_directories = ?", [[os.path.join(root, "")]]),
                    ("SET enable_external_access = false", []),
                ]
            )
            return work(session, root)
        except duckdb.Error as exc:
            error = self._error(exc, session, label)
        except OSError as exc:
            error = self._permanent(f"cannot read folder {self._path}: {exc.strerror or exc}")
        finally:
            if session is not None:
                session.close()
        # Raised outside the `except` block so the driver's exception does not ride along as
        # `__context__`: its text is not sanitised.
        raise error

    def _error(
        self, exc: duckdb.Error, session: Session | None, label: str | None
    ) -> ConnectorError:
        if session is not None and session.timed_out:
            return ConnectorError(f"statement timed out after {self._timeout_s:g}s", transient=True)
        if isinstance(exc, duckdb.InterruptException):
            return ConnectorError("DuckDB statement was interrupted", transient=True)
        if isinstance(exc, duckdb.OutOfMemoryException):
            return ConnectorError(
                sanitise(f"DuckDB ran out of memory reading {self._path}", self._secrets),
                transient=True,
            )
        if label is not None:
            return self._permanent(f"cannot read {label} in {self._path}: {first_line(exc)}")
        return self._permanent(f"DuckDB error reading {self._path}: {first_line(exc)}")

    def _permanent(self, message: str) -> ConnectorError:
        return ConnectorError(sanitise(message, self._secrets), transient=False)


def _walk(root: pathlib.Path, *, recursive: bool) -> list[tuple[str, dict[str, _Dataset]]]:
    """(schema_name, datasets by name) for the folder and, if `recursive`, its sub-folders."""
    if not recursive:
        return [(SCHEMA, _scan(root, root))]
    # The top level must be readable, as in the flat case; os.walk would silently yield nothing.
    found = [(SCHEMA, _scan(root, root))]
    # followlinks=False: a symlinked sub-folder could loop or point anywhere.
    for directory, subdirectories, _ in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(d for d in subdirectories if _usable_name(d))
        path = pathlib.Path(directory)
        if path == root:
            continue
        try:
            datasets = _scan(path, root)
        except OSError:
            # A sub-folder that is unreadable, or vanished since os.walk listed it: its files
            # are as unreadable as a corrupt one, and are left out the same way.
            continue
        found.append((_schema_for(path, root), datasets))
    return found


def _scan(directory: pathlib.Path, root: pathlib.Path) -> dict[str, _Dataset]:
    """The datasets directly inside `directory`, by name."""
    best: dict[str, _Dataset] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            dataset = _dataset(entry, root)
            if dataset is not None and (dataset.name not in best or dataset < best[dataset.name]):
                best[dataset.name] = dataset
    return best


def _dataset(entry: os.DirEntry[str], root: pathlib.Path) -> _Dataset | None:
    if not _usable_name(entry.name):
        return None
    lowered = entry.name.lower()
    matches = [
        (rank, extension, format_)
        for rank, (extension, format_) in enumerate(_EXTENSIONS)
        if lowered.endswith(extension)
    ]
    if not matches:
        return None
    rank, extension, format_ = matches[0]
    try:
        # Symlinks resolved, so the path DuckDB is handed is the file itself, inside the folder.
        real = pathlib.Path(entry.path).resolve(strict=True)
        if not (real.is_relative_to(root) and real.is_file()):
            return None
    except (OSError, RuntimeError):
        # Dangling or looping symlink, or a file that vanished meanwhile.
        return None
    return _Dataset(
        rank=rank,
        file_name=entry.name,
        name=entry.name[: -len(extension)],
        path=real,
        format=format_,
    )


def _usable_name(name: str) -> bool:
    if name.startswith("."):
        return False
    try:
        # os.fsdecode turns undecodable bytes into lone surrogates, which JSON cannot carry.
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _schema_for(directory: pathlib.Path, root: pathlib.Path) -> str:
    relative = directory.relative_to(root)
    return SCHEMA if relative == pathlib.Path() else f"{SCHEMA}/{relative.as_posix()}"


def _directory_for(root: pathlib.Path, schema_name: str, *, recursive: bool) -> pathlib.Path | None:
    """The folder `schema_name` names, or None when it names none that introspect would list."""
    if schema_name == SCHEMA:
        return root
    prefix = f"{SCHEMA}/"
    if not (recursive and schema_name.startswith(prefix)):
        return None
    directory = root
    for part in schema_name[len(prefix) :].split("/"):
        # Empty, `.`, `..` and hidden parts are never listed; NUL cannot name anything.
        if not part or not _usable_name(part) or "\x00" in part:
            return None
        directory = directory / part
        try:
            # The same rule as os.walk(followlinks=False): symlinked folders are not entered.
            if directory.is_symlink() or not directory.is_dir():
                return None
        except OSError:
            return None
    return directory
