"""PostgreSQL over TLS: libpq's URL parameters become asyncpg's `ssl` argument."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from freshet.catalog import Database
from freshet.catalog.postgres_tls import asyncpg_ssl, split_tls
from freshet.devstack.testing import make_tls_files


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Path]:
    return make_tls_files(tmp_path / "tls")


def test_urls_without_tls_parameters_are_left_alone() -> None:
    url = make_url("postgresql+asyncpg://u@h:5432/db?application_name=x")
    assert split_tls(url) == (url, {})


def test_tls_parameters_leave_the_url_and_become_the_ssl_argument(tls: dict[str, Path]) -> None:
    url = make_url(
        f"postgresql+asyncpg://u@h/db?sslmode=verify-full&sslrootcert={tls['ca']}&application_name=x"
    )
    stripped, args = split_tls(url)
    assert dict(stripped.query) == {"application_name": "x"}
    context = args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert any(
        {x[0][0]: x[0][1] for x in c["subject"]} == {"commonName": "freshet test CA"}
        for c in context.get_ca_certs()
    )


def test_modes_follow_libpq(tls: dict[str, Path]) -> None:
    assert asyncpg_ssl("prefer") == "prefer"
    assert asyncpg_ssl("disable") == "disable"
    require = asyncpg_ssl("require")
    assert isinstance(require, ssl.SSLContext)
    assert require.verify_mode == ssl.CERT_NONE  # encrypted, server not verified (libpq)
    require_with_ca = asyncpg_ssl("require", sslrootcert=str(tls["ca"]))
    assert isinstance(require_with_ca, ssl.SSLContext)
    assert require_with_ca.verify_mode == ssl.CERT_REQUIRED
    verify_ca = asyncpg_ssl("verify-ca", sslrootcert=str(tls["ca"]))
    assert isinstance(verify_ca, ssl.SSLContext)
    assert verify_ca.check_hostname is False
    mutual = asyncpg_ssl(
        "verify-full", sslrootcert=str(tls["ca"]), sslcert=str(tls["cert"]), sslkey=str(tls["key"])
    )
    assert isinstance(mutual, ssl.SSLContext)
    with pytest.raises(ValueError, match="sslmode must be one of"):
        asyncpg_ssl("on")


@pytest.mark.postgres
async def test_the_ssl_argument_reaches_asyncpg(postgres_server_url: str) -> None:
    """On a server with TLS off (the local one), `require` must fail and `prefer` fall back;
    on one with TLS on, `require` connections are encrypted. Either shows the mode reached the
    driver."""
    base = make_url(postgres_server_url).render_as_string(hide_password=False)
    sep = "&" if "?" in base else "?"
    preferring = Database(f"{base}{sep}sslmode=prefer")
    requiring = Database(f"{base}{sep}sslmode=require")
    try:
        async with preferring.engine.connect() as conn:
            server_tls = (await conn.exec_driver_sql("SHOW ssl")).scalar_one() == "on"
        if not server_tls:
            with pytest.raises(Exception, match="(?i)ssl"):
                await requiring.ping()
            return
        async with requiring.engine.connect() as conn:
            used = await conn.exec_driver_sql(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            assert used.scalar_one() is True
    finally:
        await preferring.dispose()
        await requiring.dispose()
