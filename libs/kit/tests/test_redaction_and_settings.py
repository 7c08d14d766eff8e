"""Secrets stay out of text; settings and keys behave as documented."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from freshet.catalog.secrets import SecretError, generate_key
from freshet.kit.logging import configure_logging, get_logger
from freshet.kit.redaction import describe_error, redact_mapping, redact_text
from freshet.kit.secrets import secret_box
from freshet.kit.settings import Settings
from freshet.kit.tokens import hash_token, new_token, token_entry


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("could not connect to postgresql://app:hunter2@db:5432/x", "hunter2"),
        ("dsn=postgres://u:p%40ss@h/db failed", "p%40ss"),
        ("login failed: password=hunter2; retry", "hunter2"),
        ("token: 'abc123xyz'", "abc123xyz"),
    ],
)
def test_credentials_are_removed_from_text(text: str, leak: str) -> None:
    assert leak not in redact_text(text)
    assert "[redacted]" in redact_text(text)


def test_known_secret_values_are_removed_wherever_they_appear() -> None:
    assert (
        redact_text("bad value s3cr3t-value here", ["s3cr3t-value"]) == "bad value [redacted] here"
    )


def test_secret_looking_keys_are_dropped_recursively() -> None:
    data = {"user": "ann", "password": "x", "nested": {"api_key": "y", "dsn": "z", "ok": 1}}
    assert redact_mapping(data) == {
        "user": "ann",
        "password": "[redacted]",
        "nested": {"api_key": "[redacted]", "dsn": "[redacted]", "ok": 1},
    }


def test_describe_error_is_one_short_secret_free_line() -> None:
    exc = ConnectionError("failed\n  for postgresql://a:hunter2@h/db " + "x" * 1000)
    text = describe_error(exc, limit=120)
    assert text.startswith("ConnectionError: failed for postgresql://[redacted]@h/db")
    assert "\n" not in text
    assert len(text) == 120


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_are_json_with_service_and_correlation_id_and_no_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("collector", "INFO", "json")
    with structlog.contextvars.bound_contextvars(correlation_id="corr-9"):
        get_logger("t").info("connecting", dsn="postgresql://a:hunter2@h/db", password="hunter2")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "collector"
    assert line["correlation_id"] == "corr-9"
    assert line["message"] == "connecting"
    assert line["level"] == "info"
    assert "hunter2" not in json.dumps(line)


def test_production_refuses_to_run_without_a_secret_key(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path)
    with pytest.raises(SecretError, match="no secret key"):
        secret_box(settings)
    assert not (tmp_path / "secret.key").exists()


def test_development_makes_a_private_key_file_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    box = secret_box(settings)
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    ciphertext = box.encrypt({"password": "pw"})
    assert secret_box(settings).decrypt(ciphertext) == {"password": "pw"}


def test_keys_rotate_newest_first_from_env_and_file(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    key_file = tmp_path / "keys"
    key_file.write_text(old + "\n")
    ciphertext = secret_box(Settings(secret_keys=SecretStr(old))).encrypt({"p": "1"})
    both = Settings(secret_keys=SecretStr(new), secret_key_file=key_file, environment="production")
    assert both.fernet_keys() == [new, old]
    assert secret_box(both).decrypt(ciphertext) == {"p": "1"}


def test_token_entries_hold_only_the_hash() -> None:
    token = new_token()
    entry = token_entry(token, "operator", "etl-bot")
    assert token not in entry
    assert entry == f"operator:{hash_token(token)}:etl-bot"
    with pytest.raises(ValueError, match="role must be one of"):
        token_entry(token, "root", "x")
