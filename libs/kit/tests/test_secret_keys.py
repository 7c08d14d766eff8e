"""Secret keys: where they come from, and rotating every stored secret to a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshet.catalog import Database, UnitOfWork
from freshet.catalog.secrets import SecretBox, SecretError, generate_key
from freshet.kit.secrets import main, rotate_endpoint_secrets, secret_box
from freshet.kit.settings import Settings


def test_a_single_key_from_freshet_secret_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("FRESHET_SECRET_KEY", key)
    box = secret_box(Settings())
    assert SecretBox([key]).decrypt(box.encrypt({"password": "x"})) == {"password": "x"}


def test_keys_come_newest_first_from_env_and_file(tmp_path: Path) -> None:
    one, two, three = generate_key(), generate_key(), generate_key()
    key_file = tmp_path / "keys"
    key_file.write_text(f"{three}\n\n")
    settings = Settings(
        secret_key=one, secret_keys=f"{two}, ", secret_key_file=key_file, data_dir=tmp_path
    )
    assert settings.fernet_keys() == [one, two, three]


def test_development_makes_a_private_key_file_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    token = secret_box(settings).encrypt({"password": "x"})
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert secret_box(settings).decrypt(token) == {"password": "x"}, "the same key next time"


async def test_rotation_re_encrypts_every_endpoint_so_the_old_key_can_go(
    catalog_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = generate_key(), generate_key()
    db = Database(catalog_url)
    try:
        async with UnitOfWork(db) as uow:
            ids = []
            for i in range(3):
                endpoint = await uow.endpoints.add(
                    name=f"rot-{i}-{tmp_path.name[-6:]}",
                    kind="sqlite",
                    config={"path": "/x.db"},
                    secret_ciphertext=SecretBox([old]).encrypt({"password": f"pw-{i}"}),
                )
                ids.append(endpoint.id)
            await uow.commit()
        monkeypatch.setenv("FRESHET_DATABASE_URL", catalog_url)
        monkeypatch.setenv("FRESHET_SECRET_KEYS", f"{new},{old}")
        monkeypatch.setenv("FRESHET_DATA_DIR", str(tmp_path))
        assert await rotate_endpoint_secrets(Settings()) >= 3
        async with UnitOfWork(db) as uow:
            for i, endpoint_id in enumerate(ids):
                stored = await uow.endpoints.get(endpoint_id)
                assert stored is not None
                assert SecretBox([new]).decrypt(stored.secret_ciphertext) == {"password": f"pw-{i}"}
                with pytest.raises(SecretError):
                    SecretBox([old]).decrypt(stored.secret_ciphertext)
    finally:
        await db.dispose()


def test_the_command_generates_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-key"]) == 0
    key = capsys.readouterr().out.strip()
    SecretBox([key])  # a valid Fernet key
