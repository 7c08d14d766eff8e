"""The one exception connectors raise, and the scrubbing every message goes through first.

Connector errors end up in run records, API responses and logs, so a message must be safe to
show anyone who can see the endpoint: it may name the host, port, database or file, but never a
password or a DSN that carries one.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping

REDACTED = "***"

# `scheme://user:password@host`: the user stays (it helps debugging and is not a secret), the
# password goes. The password part is greedy up to the last `@` before whitespace because
# passwords are often pasted unencoded and may themselves contain `@` or `:`.
_DSN_PASSWORD = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*):[^\s]*@")
# libpq keyword strings (`password=x`), query strings (`?password=x&...`) and YAML/JSON-ish
# dumps (`password: x`, `"password": "x"`), with or without quotes around the value.
_KEYWORD_PASSWORD = re.compile(
    r"""(?ix)
    (?P<key>\b(?:password|passwd|pwd|sslpassword)["']?\s*[=:]\s*)
    (?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,;&)}\]]+)
    """
)


class ConnectorError(Exception):
    """A connector operation failed.

    `message` is already sanitised (it never contains passwords or DSNs); `transient` says
    whether a retry may help (timeouts, connection refused) or not (authentication failure,
    missing table, bad configuration).
    """

    message: str
    transient: bool

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient

    def __repr__(self) -> str:
        return f"ConnectorError({self.message!r}, transient={self.transient})"


def sanitise(text: str, secrets: Mapping[str, str] | Iterable[str] = ()) -> str:
    """`text` with every secret value and every DSN or `password=` credential redacted.

    `secrets` is either the endpoint's secret mapping (its values are redacted, not its keys) or
    an iterable of secret values.
    """
    values = secrets.values() if isinstance(secrets, Mapping) else secrets
    variants: set[str] = set()
    for value in values:
        if not value:
            # Replacing the empty string would splice the marker between every character.
            continue
        variants.add(value)
        # Drivers and URLs show secrets percent-encoded or repr-escaped as often as raw.
        variants.add(urllib.parse.quote(value, safe=""))
        variants.add(urllib.parse.quote_plus(value, safe=""))
        variants.add(repr(value)[1:-1])
    # Longest first, so a secret that contains another secret is removed whole.
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    text = _DSN_PASSWORD.sub(rf"\g<prefix>:{REDACTED}@", text)
    return _KEYWORD_PASSWORD.sub(rf"\g<key>{REDACTED}", text)
