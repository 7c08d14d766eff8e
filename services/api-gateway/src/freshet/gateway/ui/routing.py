"""Every UI route goes through `UiRoute`: the CSRF check of unsafe methods, friendly pages for
the API's stable error codes, and the security headers of a page.

The REST API answers errors as JSON (`freshet.gateway.errors`); the same `ApiError`s raised
by the service layer under a UI route become a page here instead, so the UI never needs its
own error codes or checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.routing import APIRoute

from freshet.gateway import errors
from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.session import SAFE_METHODS, set_flash, verify_csrf

log = structlog.get_logger("freshet.gateway.ui")

# What a person reads for each stable error code: a title and what they can do about it.
ERROR_PAGES: dict[str, tuple[str, str]] = {
    "E_ROLE_FORBIDDEN": (
        "Not allowed",
        "Your role does not allow this. Ask an administrator if you need it.",
    ),
    "E_CSRF": (
        "This form has expired",
        "The page was open too long, or the request came from another site. "
        "Go back, reload the page and try again.",
    ),
    "E_ENDPOINT_NOT_FOUND": ("Endpoint not found", "It may have been deleted."),
    "E_COLLECTION_NOT_FOUND": ("Collection not found", "It may have been deleted."),
    "E_RUN_NOT_FOUND": ("Run not found", "It may have been deleted with its endpoint."),
    "E_DATASET_NOT_FOUND": ("Dataset not found", "It may have been deleted with its endpoint."),
    "E_NOT_FOUND": ("Page not found", "Check the address, or start again from the navigation."),
    "E_COLLECTION_DISABLED": (
        "Collection disabled",
        "A disabled collection takes no runs. An administrator can enable it.",
    ),
    "E_COLLECTION_IN_PROGRESS": (
        "A run is already queued or running",
        "Wait for it to finish, or cancel it, then try again.",
    ),
    "E_RUN_FINISHED": ("Run already finished", "A finished run cannot be cancelled."),
    "E_ENDPOINT_NAME_TAKEN": ("Name taken", "Another endpoint has that name."),
    "E_VALIDATION": ("Invalid input", "Correct the input and try again."),
    "E_PAYLOAD_TOO_LARGE": ("Too large", "The form sent was too large."),
    "E_PREVIEW_DISABLED": (
        "Previews are disabled",
        "This endpoint's preview policy does not allow this sample. An administrator can "
        "change the policy on the endpoint's settings.",
    ),
    "E_PREVIEW_OPTED_OUT": (
        "Opted out of previews",
        "This dataset is never sampled. An administrator can opt it back in on its page.",
    ),
    "E_DATASET_REMOVED": (
        "Dataset removed",
        "The last collection run did not find it, so it cannot be sampled or refreshed.",
    ),
    "E_PREVIEW_FAILED": (
        "Sampling failed",
        "The source did not give a sample; the reason is below. The stored preview, if any, "
        "is unchanged.",
    ),
    "E_PREVIEW_REQUEST_NOT_FOUND": ("Preview request not found", "It may have been pruned."),
    "E_TABLE_NOT_FOUND": (
        "Table not found",
        "It is not in the catalog of its connection: run the connection's collection first.",
    ),
    "E_REFRESH_NOT_FOUND": ("Refresh not found", "Check the address, or open Refreshes."),
    "E_REFRESH_FAILED": (
        "Refresh failed",
        "The table's cache was not replaced; the previous version still serves queries.",
    ),
    "E_INTERNAL": (
        "Something went wrong",
        "This was logged. Try again; if it keeps happening, tell an operator the reference below.",
    ),
}


def wants_fragment(request: Request) -> bool:
    """Whether the page's script asked (for a part of a page, not a whole one)."""
    return request.headers.get("x-requested-with") == "fetch"


def _wants_page(request: Request) -> bool:
    """Script requests (fragments, live updates) get a short text answer, not a page."""
    return not wants_fragment(request) and "text/event-stream" not in (
        request.headers.get("accept", "")
    )


def error_response(request: Request, exc: errors.ApiError) -> Response:
    if exc.code == "E_AUTH_REQUIRED":
        if not _wants_page(request):
            return PlainTextResponse("sign in again", status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"/ui/sign-in?next={quote(target, safe='')}", 303)
        if request.method not in SAFE_METHODS:
            set_flash(response, "Your session ended. Sign in again.", "error")
        return response
    if not _wants_page(request):
        return PlainTextResponse(f"{exc.code}: {exc.message}", status_code=exc.status)
    title, advice = ERROR_PAGES.get(exc.code, ERROR_PAGES["E_INTERNAL"])
    details = exc.details if isinstance(exc.details, list) else []
    return render(
        request,
        "error.html",
        {
            "code": exc.code,
            "title": title,
            "advice": advice,
            "message": exc.message,
            "details": details,
        },
        status=exc.status,
    )


def _internal(request: Request) -> Response:
    log.exception("web UI page failed", path=request.url.path)
    return error_response(request, errors.ApiError("internal error"))


def _validation(exc: RequestValidationError) -> errors.ApiError:
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return errors.ValidationFailed("the address has an invalid value", details=details)


SECURITY_HEADERS = {
    # No inline script or style anywhere: what an injected string could do is nothing.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class UiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            # Before anything is read: a live page asks for the changes announced since then.
            request.state.received_at = time.time()
            try:
                if request.method not in SAFE_METHODS:
                    await verify_csrf(request)
                response = await handle(request)
            except errors.ApiError as exc:
                response = error_response(request, exc)
            except RequestValidationError as exc:
                response = error_response(request, _validation(exc))
            except Exception:
                response = _internal(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("cache-control", "no-store")
            return response

        return guarded


def ui_router() -> APIRouter:
    return APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
