from __future__ import annotations

import pytest

from freshet.catalog.secrets import SecretBox, SecretError, generate_key


def test_secrets_round_trip_and_rotate_to_a_new_key() -> None:
    old, new = generate_key(), generate_key()
    box = SecretBox([old])
    token = box.encrypt({"password": "hunter2"})
    assert token is not None
    assert "hunter2" not in token
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(token) == {"password": "hunter2"}
    rotated = rotated_box.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == {"password": "hunter2"}


def test_a_wrong_key_fails_without_revealing_anything() -> None:
    token = SecretBox([generate_key()]).encrypt({"password": "hunter2"})
    with pytest.raises(SecretError) as err:
        SecretBox([generate_key()]).decrypt(token)
    assert "hunter2" not in str(err.value)


def test_no_secrets_store_nothing() -> None:
    box = SecretBox([generate_key()])
    assert box.encrypt({}) is None
    assert box.decrypt(None) == {}
    with pytest.raises(SecretError):
        SecretBox([])
    with pytest.raises(SecretError, match="not a valid Fernet key"):
        SecretBox(["nope"])
