"""pytest fixtures for real brokers and databases (loaded by the root conftest.py).

How a test finds its infrastructure (DESIGN.md, "Running it"):
1. `FRESHET_TEST_KAFKA_BOOTSTRAP` / `FRESHET_TEST_POSTGRES_URL` in the environment win;
2. otherwise testcontainers, when a Docker engine answers;
3. otherwise the embedded Tansu broker and the local PostgreSQL server (127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.engine import make_url

from freshet.catalog import Database
from freshet.catalog.migrate import migrate
from freshet.contracts import Envelope, Event
from freshet.devstack.broker import EmbeddedBroker

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return (
            subprocess.run(  # noqa: S603 - fixed command
                [docker, "info"], capture_output=True, timeout=5, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker shared by the session's tests (use unique topic names)."""
    configured = os.environ.get("FRESHET_TEST_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    if docker_engine_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("broker") / "broker.log") as broker:
        yield broker.bootstrap


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, for tests that restart it or need it to themselves."""
    with EmbeddedBroker(log_file=tmp_path / "broker.log") as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    configured = os.environ.get("FRESHET_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    if docker_engine_answers():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16") as pg:
            yield pg.get_connection_url(driver=None)
        return
    yield LOCAL_POSTGRES


async def _admin(server_url: str, sql: str) -> None:
    import asyncpg

    url = make_url(server_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


DatabaseFactory = Callable[[str], Awaitable[str]]


class CatalogTemplates:
    """Migrated catalogs that tests copy instead of migrating their own.

    Migrating a new database for every test cost about half a second each (eight migrations,
    SQLite's batch table copies), which made up most of the gateway suite. Each process (xdist
    worker) migrates one SQLite file and one PostgreSQL template database on first use; a test's
    catalog is a copy of the file, or `CREATE DATABASE … TEMPLATE` (a file copy on the server).
    """

    def __init__(self, server_url: str, folder: Path) -> None:
        self.server_url = server_url
        self.folder = folder
        self._sqlite: Path | None = None
        self._postgres: str | None = None

    async def sqlite(self, path: Path) -> str:
        if self._sqlite is None:
            template = self.folder / "template.db"
            await migrate(f"sqlite:///{template}")
            _checkpoint(template)
            self._sqlite = template
        shutil.copyfile(self._sqlite, path)
        return f"sqlite:///{path}"

    async def postgres(self, name: str) -> str:
        if self._postgres is None:
            template = f"freshet_template_{uuid.uuid4().hex[:12]}"
            await _admin(self.server_url, f'CREATE DATABASE "{template}"')
            await migrate(self._url(template))
            self._postgres = template
        await _admin(self.server_url, f'CREATE DATABASE "{name}" TEMPLATE "{self._postgres}"')
        return self._url(name)

    def _url(self, name: str) -> str:
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self._postgres is not None:
            drop = f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)'
            asyncio.run(_admin(self.server_url, drop))


def _checkpoint(path: Path) -> None:
    """Fold the write-ahead log into the file, so that copying the file copies everything."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def catalog_templates(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CatalogTemplates]:
    templates = CatalogTemplates(postgres_server_url, tmp_path_factory.mktemp("catalog-template"))
    yield templates
    templates.drop()


@pytest.fixture
async def new_database(
    postgres_server_url: str, tmp_path: Path, catalog_templates: CatalogTemplates
) -> AsyncIterator[DatabaseFactory]:
    """Make empty, migrated catalog databases of a kind ("sqlite" or "postgres")."""
    created: list[str] = []

    async def make(kind: str) -> str:
        if kind == "sqlite":
            return await catalog_templates.sqlite(tmp_path / f"catalog-{uuid.uuid4().hex[:8]}.db")
        name = f"freshet_test_{uuid.uuid4().hex[:12]}"
        url = await catalog_templates.postgres(name)
        created.append(name)
        return url

    yield make
    for name in created:
        await _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def catalog_url(request: pytest.FixtureRequest, new_database: DatabaseFactory) -> str:
    """A migrated catalog on SQLite and, in a second run of the test, on PostgreSQL."""
    kind: str = request.param
    return await new_database(kind)


# The bucket `s3_server` makes.
S3_TEST_BUCKET = "freshet-cache"


@pytest.fixture
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) with the bucket `S3_TEST_BUCKET`;
    yields its endpoint URL. Any access key and secret are accepted."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    from freshet.devstack.broker import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        # moto loads its S3 backend on the first request: seconds on a loaded machine, longer
        # than the AWS SDK's 3 s request timeout (a full run once failed here). A plain
        # request with room to spare takes that cost before any S3 client does.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120) as answer:
            answer.read()
        filesystem = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            access_key="test",
            secret_key="test",  # noqa: S106 - moto accepts any
            region="us-east-1",
            allow_bucket_creation=True,
            request_timeout=30,
        )
        filesystem.create_dir(S3_TEST_BUCKET)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll `probe` until it returns something truthy; fail with its last value on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def create_postgres_database(server_url: str, prefix: str = "freshet_test") -> str:
    """Create an empty database on the server (outside any event loop); return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def sqlite_catalog(new_database: DatabaseFactory) -> AsyncIterator[Database]:
    """A catalog on a fresh, migrated SQLite file: fast, for handler tests."""
    database = Database(await new_database("sqlite"))
    yield database
    await database.dispose()


class SetClock:
    """A clock a test sets: `clock()` is `clock.now` (an aware UTC datetime), for code that takes
    its time from an injected callable (the scheduler's ticker)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def read_topics(bootstrap: str, *topics: str, timeout: float = 5.0) -> list[Any]:
    """Every record of the topics from the beginning, read for `timeout` seconds."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def envelope_of(
    event: Event, *, event_id: str | None = None, correlation_id: str = "corr-1"
) -> Envelope:
    """An event as a handler receives it from the consumer wrapper."""
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        type=event.event_type,
        source="/test",
        time=datetime.now(UTC),
        correlation_id=correlation_id,
        data=event,
    )


def make_tls_files(folder: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A CA and a server certificate it signed for `host` (and localhost), as PEM files:
    `ca`, `cert`, `key`; plus `other_ca`, a CA that signed nothing here."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = ca("freshet test CA")
    _, other_cert = ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(host))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "ca": folder / "ca.pem",
        "other_ca": folder / "other-ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server-key.pem",
    }
    pem = serialization.Encoding.PEM
    files["ca"].write_bytes(ca_cert.public_bytes(pem))
    files["other_ca"].write_bytes(other_cert.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))
    files["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files
