"""connector_for: known kinds build; bad input fails permanently without echoing secrets."""

from __future__ import annotations

import math

import pytest

from freshet.connectors import KINDS, Connector, ConnectorError, connector_for

SECRET = "hunter2-do-not-print"


def test_kinds() -> None:
    assert KINDS == ("postgres", "sqlite", "duckdb", "files")


def test_builds_each_kind() -> None:
    pg = connector_for(
        "postgres", {"host": "db", "database": "x", "user": "u"}, {"password": SECRET}
    )
    lite = connector_for("sqlite", {"path": "/tmp/x.db"}, {})
    duck = connector_for("duckdb", {"path": "/tmp/x.duckdb"}, {})
    files = connector_for(
        "files",
        {"path": "/tmp/x", "recursive": True, "csv_delimiter": ";", "csv_header": False},
        {},
    )
    connectors = [pg, lite, duck, files]
    assert all(isinstance(c, Connector) for c in connectors)
    assert [c.kind for c in connectors] == ["postgres", "sqlite", "duckdb", "files"]
    # Building touches nothing: the paths above do not exist.
    assert connector_for("files", {"path": "/tmp/x"}, {}).kind == "files"


def test_unknown_kind_is_permanent() -> None:
    with pytest.raises(ConnectorError) as info:
        connector_for("oracle", {}, {})
    assert info.value.transient is False
    assert "oracle" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("postgres", {"database": "x", "user": "u"}, "host"),
        ("postgres", {"host": "db", "port": "abc", "database": "x", "user": "u"}, "port"),
        ("postgres", {"host": "db", "port": 70000, "database": "x", "user": "u"}, "port"),
        ("postgres", {"host": "db", "database": "x", "user": "u", "sslmode": "yes"}, "sslmode"),
        ("postgres", {"host": "db", "database": "x", "user": "u", "schemas": []}, "schemas"),
        ("postgres", {"host": "db", "database": "x", "user": "u", "hostname": "y"}, "hostname"),
        ("sqlite", {}, "path"),
        ("sqlite", {"path": ""}, "path"),
        ("sqlite", {"path": "a\x00b.db"}, "path"),
        ("duckdb", {}, "path"),
        ("duckdb", {"path": ""}, "path"),
        ("duckdb", {"path": "a\x00b.duckdb"}, "path"),
        ("duckdb", {"path": "x.duckdb", "read_only": False}, "read_only"),
        ("files", {}, "path"),
        ("files", {"path": ""}, "path"),
        ("files", {"path": "d", "recursive": "maybe"}, "recursive"),
        ("files", {"path": "d", "csv_delimiter": ";;"}, "csv_delimiter"),
        ("files", {"path": "d", "csv_delimiter": ""}, "csv_delimiter"),
        ("files", {"path": "d", "csv_delimiter": "\n"}, "csv_delimiter"),
        ("files", {"path": "d", "csv_header": "perhaps"}, "csv_header"),
        ("files", {"path": "d", "glob": "*.csv"}, "glob"),
    ],
)
def test_invalid_config_names_the_field(kind: str, config: dict[str, object], field: str) -> None:
    with pytest.raises(ConnectorError) as info:
        connector_for(kind, config, {"password": SECRET})
    assert info.value.transient is False
    assert field in str(info.value)


def test_invalid_config_never_echoes_a_secret() -> None:
    # The classic mistake: the password pasted into the config instead of the secrets.
    config = {"host": "db", "database": "x", "user": "u", "password": SECRET, "port": SECRET}
    with pytest.raises(ConnectorError) as info:
        connector_for("postgres", config, {"password": SECRET})
    assert "password" in str(info.value)
    assert "port" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    # Not even chained: the pydantic error holds the input values.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize("kind", ["duckdb", "files"])
def test_file_kinds_never_echo_a_secret_pasted_into_config(kind: str) -> None:
    with pytest.raises(ConnectorError) as info:
        connector_for(kind, {"path": "x", "password": SECRET}, {"password": SECRET})
    assert "password" in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.__context__ is None


def test_invalid_config_does_not_echo_values_even_when_not_declared_secret() -> None:
    with pytest.raises(ConnectorError) as info:
        connector_for("postgres", {"host": "db", "database": "x", "user": "u", "port": "pw99"}, {})
    assert "pw99" not in str(info.value)


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, math.nan, math.inf])
def test_rejects_bad_timeouts(timeout_s: float) -> None:
    with pytest.raises(ConnectorError, match="timeout_s"):
        connector_for("sqlite", {"path": "x.db"}, {}, timeout_s=timeout_s)


def test_every_kind_has_the_config_model_a_form_is_built_from() -> None:
    from freshet.connectors import CONFIG_MODELS

    assert tuple(CONFIG_MODELS) == KINDS
