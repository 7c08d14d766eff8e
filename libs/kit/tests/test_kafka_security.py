"""TLS and SASL settings reach every Kafka client the kit makes, and are really used on the wire.

A TLS listener of the test's own stands in for a broker: it completes the handshake with the
certificate a test CA signed and records the first Kafka request it decrypts. The embedded
broker answers the SASL handshake, so a SASL client is seen negotiating with it.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr, ValidationError

from freshet.contracts import TOPICS
from freshet.devstack.broker import free_port
from freshet.devstack.testing import make_tls_files
from freshet.kit.broker import kafka_client_options, list_topics, make_producer
from freshet.kit.consumer import Consumer, Subscription
from freshet.kit.settings import Settings

API_VERSIONS = 18


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Path]:
    return make_tls_files(tmp_path / "tls")


class TlsListener:
    """Accepts TLS connections and records the Kafka API key of the first request of each."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(files["cert"], files["key"])
        self.port = free_port()
        self.api_keys: list[int] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            body = await reader.readexactly(size)
            self.api_keys.append(struct.unpack(">h", body[:2])[0])
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> TlsListener:
        self.server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self.context
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def listener(tls: dict[str, Path]) -> AsyncIterator[TlsListener]:
    async with TlsListener(tls) as server:
        yield server


def tls_settings(port: int, ca: Path, **overrides: Any) -> Settings:
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=ca,
        **overrides,
    )


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert kafka_client_options(Settings(kafka_bootstrap="k:9092")) == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }


async def test_sasl_ssl_options_reach_the_producer_and_consumer_clients(
    tls: dict[str, Path],
) -> None:
    settings = Settings(
        kafka_bootstrap="k1:9093,k2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="freshet",
        kafka_sasl_password=SecretStr("s3cret-pw"),
        kafka_ssl_cafile=tls["ca"],
        kafka_ssl_check_hostname=False,
    )
    producer = make_producer(settings, client_id="t")
    client = producer.client
    assert client._security_protocol == "SASL_SSL"
    assert client._sasl_mechanism == "SCRAM-SHA-512"
    assert client._sasl_plain_username == "freshet"
    assert client._sasl_plain_password == "s3cret-pw"
    context = client._ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED
    subjects = [{x[0][0]: x[0][1] for x in c["subject"]} for c in context.get_ca_certs()]
    assert {"commonName": "freshet test CA"} in subjects
    options = kafka_client_options(settings)
    assert options["bootstrap_servers"] == "k1:9093,k2:9093"
    assert "s3cret-pw" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "FRESHET_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "FRESHET_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_ssl_certfile": Path("/x.pem")}, "go together"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_incomplete_security_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)


async def test_admin_client_speaks_tls_verified_by_the_configured_ca(
    listener: TlsListener, tls: dict[str, Path]
) -> None:
    settings = tls_settings(listener.port, tls["ca"])
    with pytest.raises(KafkaConnectionError):
        await list_topics(settings.kafka_bootstrap, settings=settings)
    # The handshake succeeded with our CA and the first request came through encrypted.
    assert listener.api_keys
    assert listener.api_keys[0] == API_VERSIONS


async def test_a_broker_certificate_from_another_ca_is_refused(
    listener: TlsListener, tls: dict[str, Path]
) -> None:
    settings = tls_settings(listener.port, tls["other_ca"])
    with pytest.raises(KafkaConnectionError):
        await list_topics(settings.kafka_bootstrap, settings=settings)
    assert listener.api_keys == []  # nothing was sent over an unverified connection


async def test_consumers_connect_with_the_same_tls_options(
    listener: TlsListener, tls: dict[str, Path]
) -> None:
    async def handler(_: object) -> None:
        raise AssertionError("nothing is consumed")

    settings = tls_settings(listener.port, tls["ca"], session_timeout_ms=2000)
    producer = make_producer(settings, client_id="t")
    consumer = Consumer(settings, Subscription(TOPICS[0], "g", handler), producer, client_id="t")
    with pytest.raises(KafkaConnectionError):
        await consumer.start()
    assert listener.api_keys[:1] == [API_VERSIONS]


@pytest.mark.broker
async def test_a_sasl_client_negotiates_its_mechanism_with_the_broker(
    kafka_bootstrap: str,
) -> None:
    """The embedded broker does not offer PLAIN: the refusal proves the handshake was sent."""
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="freshet",
        kafka_sasl_password=SecretStr("pw"),
    )
    with pytest.raises(KafkaConnectionError):
        await list_topics(kafka_bootstrap, settings=settings)
    # Without SASL the same broker answers.
    assert isinstance(await list_topics(kafka_bootstrap), set)
