"""Preview masks: an endpoint's column patterns whose values never leave the previewer.

A pattern is either a column name, matched whole and in any letter case (`email`), or a
regular expression after `re:`, searched in the column name in any letter case
(`re:^ssn`, `re:(pass|secret)`). Masked values become `MASKED`; everything else is untouched.
Patterns are checked when they are saved (the API) and compiled again where they are applied
(the previewer, for its own samples and for samples published from outside).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

REGEX_PREFIX = "re:"
MASKED = "***masked***"
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 200


class MaskError(ValueError):
    """A pattern is not acceptable; `index` says which one."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


@dataclass(frozen=True)
class Masks:
    names: frozenset[str]
    regexes: tuple[re.Pattern[str], ...]

    def matches(self, column: str) -> bool:
        return column.casefold() in self.names or any(r.search(column) for r in self.regexes)

    def __bool__(self) -> bool:
        return bool(self.names or self.regexes)

    def apply(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> tuple[list[list[Any]], list[str]]:
        """The rows with masked columns' values replaced, and which columns those were."""
        hidden = [i for i, column in enumerate(columns) if self.matches(column)]
        if not hidden:
            return [list(row) for row in rows], []
        masked_rows = []
        for row in rows:
            out = list(row)
            for i in hidden:
                if i < len(out) and out[i] is not None:
                    out[i] = MASKED
            masked_rows.append(out)
        return masked_rows, [columns[i] for i in hidden]


def compile_masks(patterns: Sequence[Any]) -> Masks:
    """Masks from stored or submitted patterns; MaskError names the first bad one."""
    if len(patterns) > MAX_PATTERNS:
        raise MaskError(MAX_PATTERNS, f"at most {MAX_PATTERNS} patterns")
    names: set[str] = set()
    regexes: list[re.Pattern[str]] = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            raise MaskError(index, "must be a non-empty string")
        if len(pattern) > MAX_PATTERN_LENGTH or "\x00" in pattern:
            raise MaskError(index, f"must be at most {MAX_PATTERN_LENGTH} characters, no NUL")
        if pattern.startswith(REGEX_PREFIX):
            try:
                regexes.append(re.compile(pattern[len(REGEX_PREFIX) :], re.IGNORECASE))
            except re.error as exc:
                # Only the regex engine's reason: the pattern itself is the caller's input.
                raise MaskError(index, f"is not a valid regular expression ({exc.msg})") from None
        else:
            names.add(pattern.casefold())
    return Masks(frozenset(names), tuple(regexes))
