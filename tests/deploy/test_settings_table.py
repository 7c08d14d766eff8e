"""The README's settings table lists every `FRESHET_*` setting with its default, and nothing
else: it is compared with the settings classes, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.settings_fields import LAUNCHER_VARIABLES, settings_defaults

README = Path(__file__).resolve().parents[2] / "README.md"
NAME = re.compile(r"`(FRESHET_[A-Z0-9_]+)`")
VALUE = re.compile(r"`([^`]*)`")


def table_rows() -> dict[str, str | None]:
    """FRESHET_NAME -> the default the README gives (None: the row gives no literal value)."""
    rows: dict[str, str | None] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not NAME.search(cells[0]):
            continue
        names = NAME.findall(cells[0])
        values = VALUE.findall(cells[1])
        assert len(values) in (0, 1, len(names)), line
        for i, name in enumerate(names):
            assert name not in rows, f"{name} is in the table twice"
            rows[name] = values[i if len(values) == len(names) else 0] if values else None
    return rows


def same(documented: str | None, default: object) -> bool:
    if default is None:
        return documented is None
    if documented is None:
        return False
    if isinstance(default, bool):
        return documented == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(documented.replace("_", "")) == float(default)
        except ValueError:
            return False
    return documented == str(default)


def test_every_setting_is_in_the_table_with_its_default() -> None:
    rows = table_rows()
    defaults = settings_defaults()
    missing = sorted(set(defaults) - set(rows))
    assert not missing, f"add to the README's settings table: {missing}"
    wrong = {
        name: (rows[name], defaults[name])
        for name in defaults
        if not same(rows[name], defaults[name])
    }
    assert not wrong, f"README default differs from the code (README, code): {wrong}"


def test_the_table_lists_nothing_that_is_not_a_setting() -> None:
    extra = set(table_rows()) - set(settings_defaults()) - LAUNCHER_VARIABLES
    assert not extra, f"not a setting of any settings class: {sorted(extra)}"
