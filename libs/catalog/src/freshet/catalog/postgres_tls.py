"""PostgreSQL over TLS, configured the way libpq is: in the database URL.

    postgresql://freshet@pg:5432/freshet?sslmode=verify-full&sslrootcert=/etc/freshet/pg-ca.pem

SQLAlchemy hands URL query parameters to asyncpg as keyword arguments, and asyncpg has no
`sslmode`/`sslrootcert` keywords (only a DSN string knows them), so they are taken out of the
URL here and turned into asyncpg's `ssl` argument. Modes follow libpq: `disable`, `allow`,
`prefer` pass through; `require` encrypts without verifying the server unless a root
certificate is given (then it verifies like `verify-ca`); `verify-ca` checks the chain;
`verify-full` checks the chain and the host name. `sslcert`/`sslkey` add a client certificate.
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.engine import URL

TLS_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword")
MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def split_tls(url: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without libpq TLS parameters, and the asyncpg connect arguments they mean."""
    given = {k: url.query[k] for k in TLS_PARAMETERS if k in url.query}
    if not given:
        return url, {}
    stripped = url.difference_update_query(TLS_PARAMETERS)
    values = {k: v if isinstance(v, str) else v[-1] for k, v in given.items()}
    return stripped, {"ssl": asyncpg_ssl(**values)}


def asyncpg_ssl(
    sslmode: str = "prefer",
    sslrootcert: str | None = None,
    sslcert: str | None = None,
    sslkey: str | None = None,
    sslpassword: str | None = None,
) -> str | ssl.SSLContext:
    if sslmode not in MODES:
        raise ValueError(f"sslmode must be one of {', '.join(MODES)}")
    if sslmode in ("disable", "allow", "prefer") and not (sslcert or sslrootcert):
        return sslmode
    if sslmode in ("disable", "allow", "prefer"):
        raise ValueError(
            f"sslmode={sslmode} with certificates: use require, verify-ca or verify-full"
        )
    verify = sslmode != "require" or sslrootcert is not None
    context = (
        ssl.create_default_context(cafile=sslrootcert)
        if verify
        else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    )
    context.check_hostname = sslmode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if sslcert:
        context.load_cert_chain(sslcert, keyfile=sslkey, password=sslpassword)
    return context
