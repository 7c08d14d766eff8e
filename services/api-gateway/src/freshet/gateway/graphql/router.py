"""`/graphql` on the gateway: POST for operations, GET for GraphiQL (and GET queries)."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from graphql import GraphQLError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from freshet.gateway.graphql.context import GraphQLContext, get_context
from freshet.gateway.graphql.errors import VALIDATION, with_codes
from freshet.gateway.graphql.schema import schema

PATH = "/graphql"
# Characters of one query document; MaxTokensLimiter bounds what the parser does with it.
MAX_QUERY_CHARS = 20_000


class FreshetGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,  # strawberry's AsyncHTTPRequestAdapter (from cross_web)
        sub_response: Response,
        context: GraphQLContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        query = request_data.query or ""
        if len(query) > MAX_QUERY_CHARS:
            error = GraphQLError(
                f"the query is longer than {MAX_QUERY_CHARS} characters",
                extensions={"code": VALIDATION},
            )
            return ExecutionResult(data=None, errors=[error])
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # The schema's ErrorCodes extension has done this for errors raised inside the
        # operation; errors raised around it (e.g. by an extension hook) get their code here.
        with_codes(result)
        return await super().process_result(request, result)


def graphql_router(**kwargs: Any) -> FreshetGraphQLRouter:
    """The router to include in the app: `app.include_router(graphql_router())`."""
    return FreshetGraphQLRouter(
        schema,
        path=PATH,
        context_getter=get_context,
        subscription_protocols=(),
        # GraphQL describes itself (introspection, docs/api/schema.graphql); its roles are
        # per field (test_graphql_roles.py), which the REST route table cannot express.
        include_in_schema=False,
        **kwargs,
    )
