"""Who is signed in to the web UI, and the CSRF check of every state-changing request.

Signing in stores the API token itself in an HttpOnly, SameSite=Lax cookie scoped to `/ui`:
every request checks it against the configured hashes (`TokenStore`), exactly as a bearer
token is checked, so a token removed from the configuration stops working in the UI at the
next gateway start, as it does for the API. Nothing is stored server-side, so any gateway
replica serves any request.

CSRF: every POST carries a token (form field `csrf_token` or header `X-CSRF-Token`) that is
HMAC-SHA256 of a fixed label keyed by a secret only the browser's HttpOnly cookie holds: the
session token once signed in, a random nonce before (so the sign-in form is covered too).
Another site can make the browser send the cookie but can neither read it nor the page, so it
cannot produce the token. A request whose `Origin` names another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import Depends, Request, Response
from prometheus_client import Counter

from freshet.catalog.schedules import ScheduleError, parse_timezone
from freshet.gateway import errors
from freshet.gateway.auth import Principal, Role, TokenStore
from freshet.gateway.deps import check_role
from freshet.gateway.settings import GatewaySettings

SESSION_COOKIE = "freshet_session"
NONCE_COOKIE = "freshet_nonce"
TZ_COOKIE = "freshet_tz"
FLASH_COOKIE = "freshet_flash"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL = b"freshet-ui-csrf-v1"
UTC_ZONE = ZoneInfo("UTC")

CSRF_REFUSALS = Counter(
    "freshet_ui_csrf_refusals_total",
    "Web UI requests refused for a missing or wrong CSRF token or a foreign Origin.",
)
SIGN_INS = Counter(
    "freshet_ui_sign_ins_total", "Web UI sign-in attempts by outcome (ok, refused).", ["outcome"]
)


class CsrfRefused(errors.ApiError):
    code = "E_CSRF"
    status = 403


class SignInRequired(errors.ApiError):
    """No valid session: pages answer with a redirect to the sign-in form."""

    code = "E_AUTH_REQUIRED"
    status = 401


@dataclass(frozen=True)
class UiUser:
    principal: Principal
    csrf: str

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def role(self) -> str:
        return self.principal.role.name

    def can(self, role: str) -> bool:
        """Whether the user's role reaches `role` (viewer, operator, admin)."""
        return self.principal.role >= Role[role]


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _tokens(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.tokens
    return store


def _session_principal(request: Request) -> tuple[str, Principal] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    principal = _tokens(request).authenticate(token)
    return None if principal is None else (token, principal)


def current_user(request: Request) -> UiUser | None:
    found = _session_principal(request)
    if found is None:
        return None
    token, principal = found
    return UiUser(principal=principal, csrf=csrf_token(token))


async def signed_in(request: Request) -> UiUser:
    user = current_user(request)
    if user is None:
        raise SignInRequired("sign in to continue")
    return user


def user_with(role: Role) -> Callable[[Request], Coroutine[Any, Any, UiUser]]:
    """A dependency: the signed-in user, who must have at least `role` (E_ROLE_FORBIDDEN)."""

    async def check(request: Request) -> UiUser:
        user = await signed_in(request)
        check_role(user.principal, role)
        return user

    return check


# A route's signed-in user with at least that role (pages' parameters; `user.can(...)` in
# templates offers only what the role may do, these refuse the rest).
Viewer = Annotated[UiUser, Depends(user_with(Role.viewer))]
Operator = Annotated[UiUser, Depends(user_with(Role.operator))]
Admin = Annotated[UiUser, Depends(user_with(Role.admin))]


def authenticate(request: Request, token: str) -> Principal | None:
    principal = _tokens(request).authenticate(token) if token else None
    SIGN_INS.labels("ok" if principal else "refused").inc()
    return principal


def _secure(request: Request) -> bool:
    settings: GatewaySettings = request.app.state.settings
    if settings.ui_cookie_secure is not None:
        return settings.ui_cookie_secure
    return request.url.scheme == "https"


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def start_session(request: Request, response: Response, token: str) -> None:
    settings: GatewaySettings = request.app.state.settings
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=settings.ui_session_ttl_s)
    response.delete_cookie(NONCE_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def form_csrf(request: Request, response: Response) -> str:
    """The CSRF token for a form on this page: the session's, or (signed out) a nonce's,
    setting the nonce cookie when the browser has none yet."""
    user = current_user(request)
    if user is not None:
        return user.csrf
    nonce = request.cookies.get(NONCE_COOKIE)
    if not nonce:
        nonce = secrets.token_urlsafe(32)
        _set_cookie(request, response, NONCE_COOKIE, nonce, max_age=None)
    return csrf_token(nonce)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every cross-site POST; without one the token decides.
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing request without the right token (E_CSRF), or without any
    secret cookie at all (signed out: E_AUTH_REQUIRED, answered with the sign-in form)."""
    found = _session_principal(request)
    secret = found[0] if found is not None else request.cookies.get(NONCE_COOKIE)
    if not secret:
        raise SignInRequired("sign in to continue")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not _same_origin(request) or not sent or not hmac.compare_digest(sent, csrf_token(secret)):
        CSRF_REFUSALS.inc()
        raise CsrfRefused("the form was not sent from this site or has expired; reload the page")


def viewer_zone(request: Request) -> ZoneInfo:
    """The browser's time zone (the UI's script reports it in a cookie); UTC until known."""
    name = request.cookies.get(TZ_COOKIE, "")
    try:
        return parse_timezone(unquote(name)) if name else UTC_ZONE
    except ScheduleError:
        return UTC_ZONE


def set_flash(response: Response, message: str, kind: str = "info") -> None:
    """A one-time message shown on the next page (after a redirect)."""
    value = quote(json.dumps({"message": message[:500], "kind": kind}))
    response.set_cookie(FLASH_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="lax")


def take_flash(request: Request, response: Response) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    try:
        data = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return None
    kind = data.get("kind") if data.get("kind") in ("info", "success", "error") else "info"
    return {"message": data["message"], "kind": str(kind)}


def local_path(target: str | None, default: str = "/ui/endpoints") -> str:
    """`target` if it is a path inside the UI (never another site: no open redirect)."""
    if not target or not target.startswith(COOKIE_PATH + "/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return default
    return target
