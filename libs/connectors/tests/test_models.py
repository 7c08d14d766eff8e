"""TableInfo.fingerprint: stable for the same shape, different for any shape change."""

from __future__ import annotations

from freshet.connectors import ColumnInfo, ForeignKeyInfo, TableInfo


def _column(
    name: str, ordinal: int, data_type: str = "integer", nullable: bool = True
) -> ColumnInfo:
    return ColumnInfo(
        name=name, data_type=data_type, nullable=nullable, ordinal=ordinal, is_primary_key=False
    )


def _table(columns: list[ColumnInfo], **changes: object) -> TableInfo:
    fields: dict[str, object] = {
        "schema_name": "public",
        "name": "t",
        "kind": "table",
        "columns": columns,
        "primary_key": ["a"],
        "foreign_keys": [],
        "row_estimate": 10,
    }
    fields.update(changes)
    return TableInfo.model_validate(fields)


def test_fingerprint_is_stable_and_ignores_volatile_details() -> None:
    base = _table([_column("a", 1), _column("b", 2)])
    reordered_list = _table([_column("b", 2), _column("a", 1)], row_estimate=99_999)
    with_fk = _table(
        [_column("a", 1), _column("b", 2)],
        foreign_keys=[
            ForeignKeyInfo(
                columns=["b"], referred_schema="public", referred_table="u", referred_columns=["id"]
            )
        ],
    )
    assert len(base.fingerprint()) == 64
    assert base.fingerprint() == reordered_list.fingerprint() == with_fk.fingerprint()
    # Pinned so an accidental change to the canonical form (which would mark every table in
    # every catalog as changed) fails loudly.
    assert base.fingerprint() == (
        "1839d264ec5fc5b94d65e3ad15840dbda5274a4a05ff148447d3d35451524417"
    )


def test_fingerprint_changes_with_shape() -> None:
    base = _table([_column("a", 1), _column("b", 2)]).fingerprint()
    variants = [
        _table([_column("a", 1), _column("c", 2)]),
        _table([_column("a", 1), _column("b", 2, data_type="text")]),
        _table([_column("a", 1), _column("b", 2, nullable=False)]),
        _table([_column("b", 1), _column("a", 2)]),
        _table([_column("a", 1)]),
        _table([_column("a", 1), _column("b", 2)], primary_key=["a", "b"]),
    ]
    assert len({base, *(v.fingerprint() for v in variants)}) == len(variants) + 1
