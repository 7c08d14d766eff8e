"""Run filters: which schemas and tables a collection run looks at.

`CollectionRequested.filters` carries them as plain JSON so that outside publishers are not
bound to this model's version; the gateway validates them up front and the collector fails
a run whose filters do not parse.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field

Patterns = list[str]


class RunFilters(BaseModel):
    """Shell-style patterns (`*`, `?`, `[abc]`), case-sensitive.

    Schema patterns match the schema name; table patterns match the table name or
    `schema.table`. A dataset is in scope when it matches every non-empty include list and
    no exclude pattern.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    include_schemas: Patterns = Field(default_factory=list, max_length=100)
    exclude_schemas: Patterns = Field(default_factory=list, max_length=100)
    include_tables: Patterns = Field(default_factory=list, max_length=100)
    exclude_tables: Patterns = Field(default_factory=list, max_length=100)

    @property
    def is_empty(self) -> bool:
        return not (
            self.include_schemas
            or self.exclude_schemas
            or self.include_tables
            or self.exclude_tables
        )

    def matches(self, schema_name: str, name: str) -> bool:
        def table_hit(patterns: Patterns) -> bool:
            qualified = f"{schema_name}.{name}"
            return any(fnmatchcase(name, p) or fnmatchcase(qualified, p) for p in patterns)

        def schema_hit(patterns: Patterns) -> bool:
            return any(fnmatchcase(schema_name, p) for p in patterns)

        if self.include_schemas and not schema_hit(self.include_schemas):
            return False
        if self.include_tables and not table_hit(self.include_tables):
            return False
        return not (schema_hit(self.exclude_schemas) or table_hit(self.exclude_tables))
