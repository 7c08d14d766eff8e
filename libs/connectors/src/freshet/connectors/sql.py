"""SQL text shared by the SQL connectors: identifier quoting and sample-limit checks.

Table and schema names come from the source itself (and, for samples, from API callers), so they
are always quoted rather than trusted: a table named `we"ird` or `x; DROP TABLE y` is just a name.
"""

from __future__ import annotations

from freshet.connectors.errors import ConnectorError

# Both SQLite and PostgreSQL take LIMIT as a signed 64-bit integer.
MAX_LIMIT = 2**63 - 1


def quote_ident(name: str) -> str:
    """`name` as a double-quoted SQL identifier (SQL standard; PostgreSQL and SQLite agree)."""
    if "\x00" in name:
        # Neither database can store such a name, and C drivers would truncate at the NUL.
        raise ConnectorError("identifier contains a NUL character", transient=False)
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """`text` as a SQL string literal, for statements that take no parameters (ATTACH, LOAD)."""
    if "\x00" in text:
        raise ConnectorError("string contains a NUL character", transient=False)
    return "'" + text.replace("'", "''") + "'"


def qualified_name(schema_name: str, table: str) -> str:
    return f"{quote_ident(schema_name)}.{quote_ident(table)}"


def check_limit(limit: int) -> int:
    if not 0 <= limit <= MAX_LIMIT:
        raise ConnectorError(f"sample limit must be between 0 and {MAX_LIMIT}", transient=False)
    return limit
