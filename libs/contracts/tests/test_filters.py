"""Run filters decide which datasets a collection run looks at."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from freshet.contracts import RunFilters


def test_no_filters_take_everything() -> None:
    filters = RunFilters()
    assert filters.is_empty
    assert filters.matches("public", "orders")


def test_include_and_exclude_patterns_on_schemas_and_tables() -> None:
    filters = RunFilters(
        include_schemas=["sales*"], include_tables=["order*"], exclude_tables=["*_tmp"]
    )
    assert not filters.is_empty
    assert filters.matches("sales", "orders")
    assert filters.matches("sales_eu", "order_lines")
    assert not filters.matches("hr", "orders"), "schema not included"
    assert not filters.matches("sales", "customers"), "table not included"
    assert not filters.matches("sales", "orders_tmp"), "excluded"


def test_table_patterns_match_qualified_names_and_are_case_sensitive() -> None:
    filters = RunFilters(exclude_tables=["audit.*"])
    assert not filters.matches("audit", "events")
    assert filters.matches("public", "events")
    assert RunFilters(include_tables=["Orders"]).matches("s", "Orders")
    assert not RunFilters(include_tables=["Orders"]).matches("s", "orders")


def test_hostile_names_are_just_names() -> None:
    filters = RunFilters(include_tables=['we"ird;*'])
    assert filters.matches("main", 'we"ird; drop table x')
    assert not filters.matches("main", "weird")


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        RunFilters.model_validate({"include": ["x"]})
