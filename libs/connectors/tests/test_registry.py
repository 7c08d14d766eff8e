"""connector_for: known kinds build; bad input fails permanently without echoing secrets."""

from __future__ import annotations

import math

import pytest

from freshet.connectors import KINDS, Connector, ConnectorError, connector_for

SECRET = "hunter2-do-not-print"


def test_kinds() -> None:
    assert KINDS == ("postgres", "sqlite")


def test_builds_each_kind() -> None:
    pg = connector_for(
        "postgres", {"host": "db", "database": "x", "user": "u"}, {"password": SECRET}
    )
    lite = connector_for("sqlite", {"path": "/tmp/x.db"}, {})
    assert isinstance(pg, Connector)
    assert isinstance(lite, Connector)
    assert (pg.kind, lite.kind) == ("postgres", "sqlite")


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


def test_invalid_config_does_not_echo_values_even_when_not_declared_secret() -> None:
    with pytest.raises(ConnectorError) as info:
        connector_for("postgres", {"host": "db", "database": "x", "user": "u", "port": "pw99"}, {})
    assert "pw99" not in str(info.value)


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, math.nan, math.inf])
def test_rejects_bad_timeouts(timeout_s: float) -> None:
    with pytest.raises(ConnectorError, match="timeout_s"):
        connector_for("sqlite", {"path": "x.db"}, {}, timeout_s=timeout_s)
