"""What a query may be: one SELECT over cached tables, decided on DuckDB's own parse tree.

The gate parses with DuckDB (`extract_statements` for the statement count and kinds,
`json_serialize_sql` for the tree) and walks the tree, never the text:

- exactly one statement, and it is a SELECT (a WITH … SELECT, VALUES, set operations and
  DuckDB's FROM-first form parse as SELECT too). COPY, ATTACH, INSTALL/LOAD, SET/RESET/USE,
  PRAGMA, CALL, CREATE, INSERT/UPDATE/DELETE, DROP, EXPORT, EXPLAIN… are refused by kind;
- every table reference is either `"<endpoint>"."<schema>"."<table>"` (three parts; these are
  the tables the query reads) or the name of a CTE *in scope* where it is used. Scope is
  followed as DuckDB binds it (a CTE sees the ones before it, a recursive CTE itself), but
  never wider: a name that is no CTE there would fall through to DuckDB's catalog
  (`duckdb_settings`, `information_schema`…), so it is refused. `'file.csv'` as a table name
  is such a one-part name;
- table functions are refused except a few that touch nothing outside the query (`range`,
  `generate_series`, `unnest`): no `read_csv`, `read_parquet`, `glob`, `read_text`,
  `read_blob`, `query`, `query_table`, `duckdb_*`…; and scalar functions that read the
  environment or settings, or take SQL text of their own, are refused wherever they appear;
- DESCRIBE/SUMMARIZE/SHOW (a SELECT over a SHOW_REF) and any table reference kind not listed
  are refused.

The text that passed is what runs (no rewriting), on an engine that cannot read or write
anything but the query's own files anyway (`freshet.gateway.query.engine`): the gate gives
clear errors and stable codes, the engine is the second wall.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from freshet.catalog.caches import TableRef
from freshet.connectors.duckdb_session import first_line
from freshet.connectors.sql import quote_ident
from freshet.gateway import errors

# Table functions a query may call: they produce values from their arguments alone.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions refused wherever they appear: they read the process's environment or
# DuckDB's settings, write DuckDB's log, or bind and run SQL text of their own.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "current_query",
        "write_log",
        "json_serialize_plan",
        "json_execute_serialized_sql",
        "query",
        "query_table",
    }
)
# Table reference kinds a SELECT may contain (anything else, e.g. SHOW_REF, is refused).
_ALLOWED_REFS = frozenset(
    {"BASE_TABLE", "JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY", "TABLE_FUNCTION", "PIVOT"}
)
# A query naming more tables than this is refused (each is resolved and leased).
MAX_TABLES = 100
_NOT_SELECT = "Only SELECT statements can be serialized"


def display_name(ref: TableRef) -> str:
    """`"<endpoint>"."<schema>"."<table>"`, as a query names it."""
    return ".".join(quote_ident(part) for part in (ref.endpoint, ref.schema_name, ref.table))


@dataclass(frozen=True)
class CheckedQuery:
    """A statement the gate let through."""

    sql: str
    # The cached tables it reads, each once, in order of first mention.
    tables: tuple[TableRef, ...]
    # The statement with every literal replaced by '?': what logs may show.
    shape: str | None
    # sha256 of the text (first 16 hex digits): ties log lines of the same statement together.
    digest: str


def digest_of(sql: str) -> str:
    return hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class SqlGate:
    """Checks statements with DuckDB's parser, on a private in-memory instance that can read
    no file and change no setting (it only ever parses). Thread-safe; blocking."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parser: duckdb.DuckDBPyConnection | None = None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._parser is None:
                parser = duckdb.connect(
                    config={
                        "threads": 1,
                        "autoinstall_known_extensions": False,
                        "autoload_known_extensions": False,
                    }
                )
                parser.execute("SET enable_external_access = false")
                parser.execute("SET lock_configuration = true")
                self._parser = parser
            return self._parser.cursor()

    def close(self) -> None:
        with self._lock:
            if self._parser is not None:
                self._parser.close()
                self._parser = None

    def check(self, sql: str) -> CheckedQuery:
        """The statement's tables, or an ApiError saying why it may not run."""
        cursor = self._cursor()
        try:
            tree = self._parse(cursor, sql)
            walk = _Walk()
            walk.visit(tree, frozenset())
            if len(walk.tables) > MAX_TABLES:
                raise errors.QueryInvalid(f"a query may name at most {MAX_TABLES} tables")
            return CheckedQuery(
                sql=sql,
                tables=tuple(walk.tables),
                shape=_shape(cursor, tree),
                digest=digest_of(sql),
            )
        finally:
            cursor.close()

    @staticmethod
    def _parse(cursor: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
        try:
            statements = cursor.extract_statements(sql)
        except duckdb.Error as exc:
            raise errors.QuerySyntax(first_line(exc)) from None
        if not statements:
            raise errors.QuerySyntax("the query is empty")
        if len(statements) > 1:
            raise errors.QueryMultipleStatements(
                f"send one statement at a time (got {len(statements)})",
                details={"statements": len(statements)},
            )
        kind = statements[0].type.name.lower()
        if kind != "select":
            raise _not_select(kind)
        row = cursor.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
        parsed: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
        if parsed.get("error"):
            message = str(parsed.get("error_message", "could not be parsed"))
            if _NOT_SELECT in message:
                # PRAGMA counts as a SELECT for extract_statements but is not one.
                raise _not_select("pragma")
            raise errors.QuerySyntax(message.split("\n", 1)[0])
        tree: dict[str, Any] = parsed["statements"][0]["node"]
        return tree


def _not_select(kind: str) -> errors.ApiError:
    # DuckDB files INSTALL under the LOAD kind.
    said = "INSTALL or LOAD" if kind == "load" else kind.upper()
    return errors.QueryNotSelect(
        f"only a single SELECT may run here, not {said}: queries are read-only",
        details={"statement": kind},
    )


class _Walk:
    """One pass over a parse tree: collects the three-part tables, refuses the rest."""

    def __init__(self) -> None:
        self.tables: list[TableRef] = []

    def visit(self, node: Any, scope: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self.visit(item, scope)
            return
        if not isinstance(node, dict):
            return
        if "cte_map" in node:
            self._query_node(node, scope)
            return
        if "function_name" in node:
            self._function(node)
        if "class" not in node and "sample" in node and "type" in node:
            self._table_ref(node, scope)
        if node.get("class") == "PARAMETER":
            raise errors.QueryInvalid("query parameters ($1, ?) are not supported")
        for value in node.values():
            self.visit(value, scope)

    def _query_node(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        ctes = node.get("cte_map") or {}
        seen = scope
        for entry in ctes.get("map", []) if isinstance(ctes, dict) else []:
            # A CTE sees those defined before it (and itself only when recursive: the
            # RECURSIVE_CTE_NODE below adds its own name).
            self.visit(entry.get("value"), seen)
            seen = seen | {str(entry.get("key", "")).lower()}
        if node.get("type") == "RECURSIVE_CTE_NODE":
            seen = seen | {str(node.get("cte_name", "")).lower()}
        for key, value in node.items():
            if key != "cte_map":
                self.visit(value, seen)

    def _function(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        if name in FORBIDDEN_FUNCTIONS:
            raise errors.QueryFunctionForbidden(
                f"the function {name} is not allowed in queries", details={"function": name}
            )

    def _table_ref(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        kind = str(node["type"])
        if kind.endswith("_NODE"):
            return
        if kind not in _ALLOWED_REFS:
            # DESCRIBE, SUMMARIZE and SHOW parse as a SELECT over a SHOW_REF.
            raise _not_select(str(node.get("show_type") or kind).lower())
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise errors.QueryFunctionForbidden(
                    f"the table function {name} is not allowed: queries read cached tables "
                    'only, named "<connection>"."<schema>"."<table>"',
                    details={"function": name},
                )
        elif kind == "BASE_TABLE":
            self._base_table(node, scope)

    def _base_table(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        catalog = str(node.get("catalog_name") or "")
        schema = str(node.get("schema_name") or "")
        table = str(node.get("table_name") or "")
        if catalog and schema:
            ref = TableRef(catalog, schema, table)
            if ref not in self.tables:
                self.tables.append(ref)
            return
        if not catalog and not schema and table.lower() in scope:
            return  # a CTE
        written = ".".join(quote_ident(p) for p in (catalog, schema, table) if p)
        raise errors.QueryTableNotQualified(
            f"{written} is not a cached table: name tables "
            '"<connection>"."<schema>"."<table>" (or a CTE of the query)',
            details={"table": written},
        )


def _shape(cursor: duckdb.DuckDBPyConnection, tree: dict[str, Any]) -> str | None:
    """The statement with every literal replaced by '?' (for logs: literals may be data)."""
    blank = copy.deepcopy(tree)
    for node in _dicts(blank):
        if node.get("class") == "CONSTANT":
            node["value"] = {"type": {"id": "VARCHAR", "type_info": None}, "is_null": False}
            node["value"]["value"] = "?"
    document = {"error": False, "statements": [{"node": blank, "named_param_map": []}]}
    try:
        row = cursor.execute(
            "SELECT json_deserialize_sql(?::JSON)", [json.dumps(document)]
        ).fetchone()
    except duckdb.Error:
        return None
    return str(row[0]) if row else None


def _dicts(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)
