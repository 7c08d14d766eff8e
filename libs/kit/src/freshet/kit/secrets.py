"""The Fernet box every service opens endpoint secrets with, and key rotation."""

from __future__ import annotations

import argparse
import asyncio
import sys

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.secrets import SecretBox, SecretError, generate_key
from freshet.kit.settings import Settings

DEV_KEY_FILE = "secret.key"


def secret_box(settings: Settings) -> SecretBox:
    """Keys from settings; in development a key file under the data folder is made if needed.

    Outside development a missing key stops the service: secrets written with a throwaway
    key could never be read again.
    """
    keys = settings.fernet_keys()
    if keys:
        return SecretBox(keys)
    if settings.is_production:
        raise SecretError(
            "no secret key: set FRESHET_SECRET_KEYS or FRESHET_SECRET_KEY_FILE (production mode)"
        )
    path = settings.data_dir / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(generate_key() + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    return SecretBox([path.read_text().strip()])


async def rotate_endpoint_secrets(settings: Settings) -> int:
    """Re-encrypt every stored endpoint secret with the first configured key."""
    db = Database(settings.database_url)
    try:
        async with UnitOfWork(db) as uow:
            rotated = await uow.endpoints.rotate_secrets(secret_box(settings))
            await uow.commit()
        return rotated
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    """`python -m freshet.kit.secrets rotate`: after putting a new key first.

    1. FRESHET_SECRET_KEYS=new,old (or the new key on the first line of the key file);
    2. run this once; 3. restart the services with only the new key.
    """
    parser = argparse.ArgumentParser(prog="python -m freshet.kit.secrets")
    parser.add_argument("command", choices=["rotate", "generate-key"])
    args = parser.parse_args(argv)
    if args.command == "generate-key":
        sys.stdout.write(generate_key() + "\n")
        return 0
    rotated = asyncio.run(rotate_endpoint_secrets(Settings()))
    sys.stdout.write(f"re-encrypted the secrets of {rotated} endpoint(s) with the first key\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
