"""Kafka clients made the same way everywhere, with the settings FACTS.md calls for."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from freshet.contracts import TOPICS, Topic
from freshet.kit.settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS for the broker connections: the CA file (or the system's store), a client
    certificate when one is configured (mutual TLS), hostname checks unless turned off."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        password=(
            settings.kafka_ssl_key_password.get_secret_value()
            if settings.kafka_ssl_key_password
            else None
        ),
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Connection options every aiokafka client of a service is made with (producer, consumers,
    admin): bootstrap servers plus the configured TLS and SASL."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings validator checked it
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    # No idempotent producer or transactions: the embedded broker cannot do them and the
    # design relies on the outbox plus idempotent consumers instead.
    return AIOKafkaProducer(
        **kafka_client_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=settings.max_message_bytes + 64 * 1024,
        request_timeout_ms=15_000,
    )


def wanted_topics(topics: Iterable[Topic] = TOPICS) -> dict[str, int]:
    """Topic name -> partitions, dead-letter topics included."""
    out: dict[str, int] = {}
    for t in topics:
        out[t.name] = t.partitions
        out[t.dead_letter] = t.dead_letter_partitions
    return out


def _admin_options(bootstrap: str, settings: Settings | None) -> dict[str, Any]:
    if settings is None:
        return {"bootstrap_servers": bootstrap}
    return {**kafka_client_options(settings), "bootstrap_servers": bootstrap}


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[Topic] = TOPICS,
    *,
    replication_factor: int = 1,
    settings: Settings | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, with their partition counts; return those made.

    Created explicitly because brokers that auto-create topics pick their own partition count.
    `settings` brings the TLS/SASL options (none: a plaintext connection).
    """
    admin = AIOKafkaAdminClient(**_admin_options(bootstrap, settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = {n: p for n, p in wanted_topics(topics).items() if n not in existing}
        if missing:
            # Another process may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, p, replication_factor) for n, p in missing.items()]
                )
        return sorted(missing)
    finally:
        await admin.close()


async def list_topics(
    bootstrap: str, timeout_s: float = 5.0, *, settings: Settings | None = None
) -> set[str]:
    admin = AIOKafkaAdminClient(
        **_admin_options(bootstrap, settings), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        return set(await asyncio.wait_for(admin.list_topics(), timeout_s))
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m freshet.kit.broker create-topics`: every topic and its dead-letter topic, with
    the registry's partition counts and FRESHET_TOPIC_REPLICATION_FACTOR (deploy jobs run it)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m freshet.kit.broker")
    parser.add_argument("command", choices=["create-topics"])
    parser.parse_args(argv)
    settings = Settings()
    made = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap,
            replication_factor=settings.topic_replication_factor,
            settings=settings,
        )
    )
    sys.stdout.write(f"created {len(made)} topic(s): {', '.join(made) or 'none missing'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
