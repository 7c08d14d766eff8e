"""Keep secrets out of logs, errors, events and dead-letter headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|dsn|credential|api[_-]?key", re.I)
_DSN_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/@\s:]+(:[^/@\s]*)?@", re.I)
_KEY_VALUE = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key)\b\s*[=:]\s*)"
    r"(?P<q>['\"]?)[^\s'\",;]+(?P=q)",
    re.I,
)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values, DSN credentials and `password=…` pairs from text."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    text = _DSN_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", text)


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop values of secret-looking keys and scrub strings, recursively."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if _SECRET_KEYS.search(key):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, str):
            out[key] = redact_text(value)
        else:
            out[key] = value
    return out


def describe_error(exc: BaseException, secrets: Iterable[str] = (), limit: int = 500) -> str:
    """A one-line, secret-free description of an exception, for people and headers."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = redact_text(" ".join(text.split()), secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"
