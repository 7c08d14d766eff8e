"""Building a connector from an endpoint's kind, stored config and decrypted secrets."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from freshet.connectors.connector import Connector
from freshet.connectors.duckdb import DuckdbConfig, DuckdbConnector
from freshet.connectors.errors import ConnectorError, sanitise
from freshet.connectors.files import FilesConfig, FilesConnector
from freshet.connectors.postgres import PostgresConfig, PostgresConnector
from freshet.connectors.sqlite import SqliteConfig, SqliteConnector

M = TypeVar("M", bound=BaseModel)

_Factory = Callable[[Mapping[str, object], Mapping[str, str], float], Connector]


def _postgres(
    config: Mapping[str, object], secrets: Mapping[str, str], timeout_s: float
) -> Connector:
    parsed = _validate("postgres", PostgresConfig, config, secrets)
    return PostgresConnector(parsed, secrets, timeout_s=timeout_s)


def _sqlite(
    config: Mapping[str, object], secrets: Mapping[str, str], timeout_s: float
) -> Connector:
    parsed = _validate("sqlite", SqliteConfig, config, secrets)
    return SqliteConnector(parsed, secrets, timeout_s=timeout_s)


def _duckdb(
    config: Mapping[str, object], secrets: Mapping[str, str], timeout_s: float
) -> Connector:
    parsed = _validate("duckdb", DuckdbConfig, config, secrets)
    return DuckdbConnector(parsed, secrets, timeout_s=timeout_s)


def _files(config: Mapping[str, object], secrets: Mapping[str, str], timeout_s: float) -> Connector:
    parsed = _validate("files", FilesConfig, config, secrets)
    return FilesConnector(parsed, secrets, timeout_s=timeout_s)


_FACTORIES: dict[str, _Factory] = {
    "postgres": _postgres,
    "sqlite": _sqlite,
    "duckdb": _duckdb,
    "files": _files,
}
KINDS: tuple[str, ...] = tuple(_FACTORIES)
# Each kind's config model: what a form for it asks (the web UI builds its fields from these).
CONFIG_MODELS: dict[str, type[BaseModel]] = {
    "postgres": PostgresConfig,
    "sqlite": SqliteConfig,
    "duckdb": DuckdbConfig,
    "files": FilesConfig,
}


def connector_for(
    kind: str,
    config: Mapping[str, object],
    secrets: Mapping[str, str],
    *,
    timeout_s: float = 30.0,
) -> Connector:
    """A connector for `kind`; ConnectorError(transient=False) for an unknown kind or bad config.

    `timeout_s` bounds connecting and every single statement.
    """
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise ConnectorError(
            sanitise(f"unknown connector kind {kind!r}; known: {', '.join(KINDS)}", secrets),
            transient=False,
        )
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConnectorError("timeout_s must be a positive number of seconds", transient=False)
    return factory(config, secrets, timeout_s)


def _validate(
    kind: str, model: type[M], config: Mapping[str, object], secrets: Mapping[str, str]
) -> M:
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        # Built from locations and messages only: str(ValidationError) echoes the input values,
        # and a password pasted into the wrong field would end up in the message. `field (why)`
        # rather than `field: why`, which sanitise would read as `password: <value>`.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'config'} ({error['msg']})"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        )
    # Raised outside the `except` block so the ValidationError, input values and all, does not
    # ride along as `__context__`.
    raise ConnectorError(sanitise(f"invalid {kind} config: {problems}", secrets), transient=False)


ConnectorFactory = Callable[[str, Mapping[str, object], Mapping[str, str]], Connector]


def connector_factory(timeout_s: float) -> ConnectorFactory:
    """`connector_for` with a fixed timeout: what services hold, and tests replace."""

    def connect(kind: str, config: Mapping[str, object], secrets: Mapping[str, str]) -> Connector:
        return connector_for(kind, config, secrets, timeout_s=timeout_s)

    return connect
