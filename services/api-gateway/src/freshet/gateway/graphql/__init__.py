"""GraphQL on the gateway (`/graphql`): seed 003's schema, over the same service layer as REST.

- Schema: seed 003 exactly (names, nullability, defaults), plus additive fields and queries
  (`endpoints`, `endpoint`, `run`, `cancelRun`, run counts, cursors). The SDL is committed in
  `docs/api/schema.graphql`; regenerate it with
  `python -m freshet.gateway.graphql.sdl docs/api/schema.graphql` (a test fails on drift).
- Auth: the `Authorization: Bearer` token, checked per field: every Query and Mutation field
  is declared with a role (`permissions.role_field`) and the schema refuses to build with a
  root field without one. Queries need viewer; triggers and `cancelRun` operator; creating,
  changing and deleting collections admin.
- Errors: `extensions.code` as in REST (`errors.py`), HTTP status 200 (GraphQL convention).
- Lists: plain lists as the seed says; each item has a `cursor` to pass back as `after`.
- `temporalRunId` is always null: runs are not executed by Temporal here; `workflowId` is
  the run's execution id.
- Limits: depth 10, 2,000 tokens, 30 aliases, 20,000 characters per query. Introspection
  stays on: the schema is public.
"""

from freshet.gateway.graphql.router import graphql_router
from freshet.gateway.graphql.schema import schema

__all__ = ["graphql_router", "schema"]
