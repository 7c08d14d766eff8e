"""Every GraphQL error carries `extensions.code`, the same codes as REST (`ApiError.code`).

- An `ApiError` raised by a resolver or the service layer: its code, message and details.
- A pydantic `ValidationError` (an input model refused what was sent): `E_VALIDATION`, with
  `details` of `loc`/`msg` only, never the input values.
- An error of the request itself, found by graphql-core before anything ran (syntax, unknown
  field, wrong argument type, bad enum value, variables that do not coerce, depth and size
  limits): `E_VALIDATION` with graphql-core's message. Such errors have no `path`.
- Anything else: `E_INTERNAL` with a generic message. The exception's text never reaches the
  client (it could carry a secret); it is logged, with its traceback, through structlog.

Transport: GraphQL errors are answered with HTTP 200 and `{"data": …, "errors": [...]}`, as
GraphQL over HTTP does; clients look at `errors[].extensions.code`, not at the status. Only a
request that is not GraphQL at all (no query, a body that is not JSON, a mutation over GET)
gets a 4xx with a plain-text reason from strawberry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from freshet.gateway import errors

log = structlog.get_logger("freshet.gateway.graphql")

INTERNAL_MESSAGE = "internal error"
VALIDATION = errors.ValidationFailed.code
INTERNAL = errors.ApiError.code

_CAMEL = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    """`schedule_cron` → `scheduleCron`: the names a GraphQL client sent."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def pydantic_details(
    exc: ValidationError, prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """`loc` (in GraphQL names) and `msg` of each problem; the input values are left out."""
    return [
        {
            "loc": [*prefix, *(camel(p) if isinstance(p, str) else p for p in e["loc"])],
            "msg": e["msg"],
        }
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _graphql_details(details: Any) -> Any:
    """Service-layer details name GraphQL inputs in snake_case (`["input", "schedule_cron"]`);
    give them the names the client used. Other details pass unchanged."""
    if not isinstance(details, list):
        return details
    out: list[Any] = []
    for item in details:
        loc = item.get("loc") if isinstance(item, dict) else None
        if isinstance(loc, list) and loc[:1] == ["input"]:
            item = {**item, "loc": [camel(p) if isinstance(p, str) else p for p in loc]}
        out.append(item)
    return out


def _root_cause(error: GraphQLError) -> BaseException | None:
    """The exception behind an error, through graphql-core's wrapping."""
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError) and cause.original_error is not None:
        cause = cause.original_error
    return cause


def classify(error: GraphQLError) -> tuple[str, str, Any]:
    """(code, message, details) for an error, following the module docstring's rules."""
    cause = _root_cause(error)
    if isinstance(cause, errors.ApiError):
        return cause.code, cause.message, _graphql_details(cause.details)
    if isinstance(cause, ValidationError):
        return VALIDATION, "input is invalid", pydantic_details(cause, ["input"])
    if error.path is None and (
        cause is None or isinstance(cause, GraphQLError | ValueError | TypeError)
    ):
        # Parsing, validation, variable coercion (scalar parsers raise ValueError or
        # TypeError): the request is wrong and nothing ran. Errors raised while executing
        # always have a path.
        return VALIDATION, error.message, None
    return INTERNAL, INTERNAL_MESSAGE, None


def with_code(error: GraphQLError) -> GraphQLError:
    """The error as the client sees it: `extensions.code` (and `details`), nothing else.

    Idempotent: an error that already has a code is returned unchanged.
    """
    if error.extensions and "code" in error.extensions:
        return error
    code, message, details = classify(error)
    extensions: dict[str, Any] = {"code": code}
    if details is not None:
        extensions["details"] = details
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        # Dropped for E_INTERNAL so nothing downstream can render the exception's text.
        original_error=None if code == INTERNAL else error.original_error,
        extensions=extensions,
    )


def with_codes(result: GraphQLExecutionResult | ExecutionResult) -> None:
    if result.errors:
        result.errors = [with_code(e) for e in result.errors]


def log_errors(errors_: Sequence[GraphQLError]) -> None:
    """Log what went wrong: unexpected errors with their traceback, the rest briefly."""
    for error in errors_:
        code, message, _ = classify(error)
        path = ".".join(str(p) for p in error.path) if error.path else None
        if code == INTERNAL:
            cause = _root_cause(error)
            log.error("graphql resolver failed", path=path, exc_info=cause)
        else:
            log.info("graphql error", code=code, path=path, message=message)


class ErrorCodes(SchemaExtension):
    """Give every error of an operation its code once the operation is done (like
    strawberry's MaskErrors, which this replaces)."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, GraphQLExecutionResult | ExecutionResult):
            with_codes(result)
