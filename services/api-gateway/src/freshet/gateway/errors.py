"""Errors with stable codes, the same for REST and GraphQL."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    code = "E_INTERNAL"
    status = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def _error(code: str, status: int) -> type[ApiError]:
    return type(code, (ApiError,), {"code": code, "status": status})


AuthRequired = _error("E_AUTH_REQUIRED", 401)
RoleForbidden = _error("E_ROLE_FORBIDDEN", 403)
ValidationFailed = _error("E_VALIDATION", 422)
EndpointNotFound = _error("E_ENDPOINT_NOT_FOUND", 404)
EndpointNameTaken = _error("E_ENDPOINT_NAME_TAKEN", 409)
CollectionNotFound = _error("E_COLLECTION_NOT_FOUND", 404)
CollectionDisabled = _error("E_COLLECTION_DISABLED", 409)
CollectionInProgress = _error("E_COLLECTION_IN_PROGRESS", 409)
RunNotFound = _error("E_RUN_NOT_FOUND", 404)
RunFinished = _error("E_RUN_FINISHED", 409)
DatasetNotFound = _error("E_DATASET_NOT_FOUND", 404)
NotFound = _error("E_NOT_FOUND", 404)
ScheduleNotFound = _error("E_SCHEDULE_NOT_FOUND", 404)
DeadLetterNotFound = _error("E_DEAD_LETTER_NOT_FOUND", 404)
DeadLetterPurged = _error("E_DEAD_LETTER_PURGED", 409)
DeadLetterNotReplayable = _error("E_DEAD_LETTER_NOT_REPLAYABLE", 409)
BrokerUnavailable = _error("E_BROKER_UNAVAILABLE", 503)
PreviewDisabled = _error("E_PREVIEW_DISABLED", 409)
PreviewOptedOut = _error("E_PREVIEW_OPTED_OUT", 409)
DatasetRemoved = _error("E_DATASET_REMOVED", 409)
PreviewFailed = _error("E_PREVIEW_FAILED", 502)
PreviewRequestNotFound = _error("E_PREVIEW_REQUEST_NOT_FOUND", 404)
TableNotFound = _error("E_TABLE_NOT_FOUND", 404)
RefreshNotFound = _error("E_REFRESH_NOT_FOUND", 404)
RefreshFailed = _error("E_REFRESH_FAILED", 502)
# SQL over the caches (POST /query).
NotAcceptable = _error("E_NOT_ACCEPTABLE", 406)
QuerySyntax = _error("E_QUERY_SYNTAX", 400)
QueryMultipleStatements = _error("E_QUERY_MULTIPLE_STATEMENTS", 400)
QueryNotSelect = _error("E_QUERY_NOT_SELECT", 400)
QueryFunctionForbidden = _error("E_QUERY_FUNCTION_FORBIDDEN", 400)
QueryTableNotQualified = _error("E_QUERY_TABLE_NOT_QUALIFIED", 400)
QueryInvalid = _error("E_QUERY_INVALID", 400)
QueryFailed = _error("E_QUERY_FAILED", 400)
QuerySandbox = _error("E_QUERY_SANDBOX", 400)
QueryNameUnsupported = _error("E_QUERY_NAME_UNSUPPORTED", 422)
QueryResources = _error("E_QUERY_RESOURCES", 422)
QueryNotCached = _error("E_QUERY_NOT_CACHED", 409)
QuerySchemaStale = _error("E_QUERY_SCHEMA_STALE", 409)
QueryFetchFailed = _error("E_QUERY_FETCH_FAILED", 502)
QueryBusy = _error("E_QUERY_BUSY", 503)
QueryCacheUnavailable = _error("E_QUERY_CACHE_UNAVAILABLE", 503)
QueryTimeout = _error("E_QUERY_TIMEOUT", 504)
QueryFetchTimeout = _error("E_QUERY_FETCH_TIMEOUT", 504)


def body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Locations and messages only: echoing the input could echo a password.
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(body("E_VALIDATION", "request is invalid", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body the JSON parser gave up on (nesting too deep, a
            # number too long): the same request error as malformed JSON, with the same code.
            details = [{"loc": ["body"], "msg": "could not be parsed"}]
            return JSONResponse(
                body("E_VALIDATION", "request body could not be parsed", details),
                status_code=422,
            )
        code = {404: "E_NOT_FOUND", 405: "E_METHOD_NOT_ALLOWED"}.get(exc.status_code, "E_HTTP")
        return JSONResponse(
            body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
