"""Preview masks: names (any case) or `re:` regexes; bad patterns refused with their index."""

from __future__ import annotations

import pytest

from freshet.catalog.masks import MASKED, MaskError, compile_masks


def test_names_match_whole_in_any_case_and_regexes_search() -> None:
    masks = compile_masks(["Email", "re:^ssn", "re:pass(word)?"])
    assert masks.matches("email")
    assert masks.matches("EMAIL")
    assert not masks.matches("email_verified")
    assert masks.matches("SSN_last4")
    assert not masks.matches("has_ssn")
    assert masks.matches("user_password_hash")


def test_apply_replaces_values_of_masked_columns_and_keeps_nulls() -> None:
    masks = compile_masks(["secret"])
    rows, masked = masks.apply(["id", "secret"], [[1, "x"], [2, None]])
    assert rows == [[1, MASKED], [2, None]]
    assert masked == ["secret"]


def test_no_patterns_mask_nothing() -> None:
    masks = compile_masks([])
    assert not masks
    assert masks.apply(["a"], [[1]]) == ([[1]], [])


@pytest.mark.parametrize(
    ("patterns", "index", "words"),
    [
        (["ok", ""], 1, "non-empty"),
        (["re:("], 0, "not a valid regular expression"),
        (["x" * 201], 0, "at most 200"),
        (["a\x00b"], 0, "no NUL"),
        ([7], 0, "non-empty string"),
        (["a"] * 101, 100, "at most 100"),
    ],
)
def test_bad_patterns_are_refused_naming_which(
    patterns: list[object], index: int, words: str
) -> None:
    with pytest.raises(MaskError) as refused:
        compile_masks(patterns)
    assert refused.value.index == index
    assert words in refused.value.message
