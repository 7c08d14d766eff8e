"""Every `FRESHET_*` setting of the workspace: the fields of each pydantic-settings class in a
`settings.py` module of a member (a new member's settings are found without a change here)."""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
# Read with os.environ by the launcher, not by a settings class.
LAUNCHER_VARIABLES = {"FRESHET_KAFKA_PORT"}


@cache
def settings_classes() -> tuple[type[BaseSettings], ...]:
    found: list[type[BaseSettings]] = []
    for path in sorted(ROOT.glob("*/*/src/freshet/*/settings.py")):
        module = importlib.import_module(f"freshet.{path.parent.name}.settings")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseSettings)
                and cls.__module__ == module.__name__
                and cls.model_config.get("env_prefix") == "FRESHET_"
            ):
                found.append(cls)
    return tuple(found)


@cache
def settings_defaults() -> dict[str, object]:
    """FRESHET_NAME -> default, over every settings class."""
    out: dict[str, object] = {}
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            out[f"FRESHET_{name.upper()}"] = field.default
    return out


def every_setting_env_name() -> set[str]:
    return set(settings_defaults()) | LAUNCHER_VARIABLES
