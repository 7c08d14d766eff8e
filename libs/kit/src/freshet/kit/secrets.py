"""The Fernet box every service opens endpoint secrets with."""

from __future__ import annotations

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
