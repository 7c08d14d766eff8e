"""sanitise: no secret or credential-bearing DSN survives into a message."""

from __future__ import annotations

import pytest

from freshet.connectors import ConnectorError, sanitise

SECRET = "S3cr3t!p@ss/word"


def test_connector_error_carries_message_and_transience() -> None:
    exc = ConnectorError("boom", transient=True)
    assert str(exc) == "boom"
    assert exc.message == "boom"
    assert exc.transient is True
    assert repr(exc) == "ConnectorError('boom', transient=True)"


def test_removes_secret_values_from_a_mapping() -> None:
    text = f"login with {SECRET} failed; again: {SECRET}"
    cleaned = sanitise(text, {"password": SECRET})
    assert SECRET not in cleaned
    assert cleaned == "login with *** failed; again: ***"


def test_removes_secret_values_from_an_iterable() -> None:
    assert sanitise("token abc123 used", ["abc123"]) == "token *** used"


def test_removes_encoded_forms_of_a_secret() -> None:
    encoded = "S3cr3t%21p%40ss%2Fword"
    assert encoded not in sanitise(f"url had {encoded}", {"password": SECRET})
    escaped = sanitise("repr: 'tab\\there'", ["tab\there"])
    assert escaped == "repr: '***'"


def test_mapping_keys_are_not_treated_as_secrets() -> None:
    assert sanitise("the password field", {"password": "xyz"}) == "the password field"


def test_empty_secret_is_ignored() -> None:
    assert sanitise("unchanged", {"password": ""}) == "unchanged"


def test_longer_secret_is_removed_whole() -> None:
    cleaned = sanitise("key=abcdef", ["abc", "abcdef"])
    assert "def" not in cleaned


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("could not connect to postgresql://app:hunter2@db:5432/x", "hunter2"),
        ("dsn postgres+asyncpg://app:pa:ss@word@db/x end", "pa:ss@word"),
        ("host=db user=app password=hunter2 dbname=x", "hunter2"),
        ("host=db password='two words' dbname=x", "two words"),
        ('{"password": "hunter2", "host": "db"}', "hunter2"),
        ("https://db/?user=a&password=hunter2&x=1", "hunter2"),
        ("PWD=hunter2;Server=db", "hunter2"),
        ("passwd: hunter2", "hunter2"),
    ],
)
def test_removes_credentials_that_look_like_dsns(text: str, leaked: str) -> None:
    cleaned = sanitise(text)
    assert leaked not in cleaned
    assert "***" in cleaned


def test_keeps_useful_context() -> None:
    cleaned = sanitise("could not connect to postgresql://app:hunter2@db.internal:5432/sales")
    assert cleaned == "could not connect to postgresql://app:***@db.internal:5432/sales"
    message = 'password authentication failed for user "app"'
    assert sanitise(message) == message
    assert sanitise("see http://example.com/docs") == "see http://example.com/docs"
