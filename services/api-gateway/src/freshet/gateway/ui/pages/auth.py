"""Signing in and out, and where `/ui/` leads."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from freshet.gateway.ui.rendering import render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import (
    COOKIE_PATH,
    TZ_COOKIE,
    authenticate,
    current_user,
    end_session,
    local_path,
    start_session,
)

router = ui_router()


@router.get("/")
async def home(request: Request) -> Response:
    target = "/ui/endpoints" if current_user(request) else "/ui/sign-in"
    return RedirectResponse(target, 303)


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    if current_user(request) is not None:
        return RedirectResponse(local_path(next), 303)
    return render(request, "sign_in.html", {"next": local_path(next), "error": None})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await request.form()
    token = form.get("token")
    target = local_path(str(form.get("next") or ""))
    principal = authenticate(request, token.strip() if isinstance(token, str) else "")
    if principal is None:
        return render(
            request,
            "sign_in.html",
            {"next": target, "error": "That token is not valid. Check it and try again."},
            status=401,
        )
    response = RedirectResponse(target, 303)
    assert isinstance(token, str)
    start_session(request, response, token.strip())
    zone = form.get("tz")
    if isinstance(zone, str) and 0 < len(zone) <= 64:
        # Read back through parse_timezone on every request; a bad name means UTC.
        response.set_cookie(TZ_COOKIE, zone, path=COOKIE_PATH, samesite="lax")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/ui/sign-in", 303)
    end_session(response)
    return response
