"""Typed FastAPI dependencies: one settings object, a unit of work, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from freshet.catalog import UnitOfWork
from freshet.catalog.secrets import SecretBox
from freshet.gateway import errors
from freshet.gateway.auth import Principal, Role, TokenStore
from freshet.gateway.service_layer.caller import Caller
from freshet.gateway.settings import GatewaySettings
from freshet.kit.service import ServiceRuntime

bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def get_uow(
    runtime: Annotated[ServiceRuntime, Depends(get_runtime)],
) -> AsyncIterator[UnitOfWork]:
    async with UnitOfWork(runtime.db) as uow:
        yield uow


async def get_read_uow(
    runtime: Annotated[ServiceRuntime, Depends(get_runtime)],
) -> AsyncIterator[UnitOfWork]:
    async with UnitOfWork(runtime.db, read_only=True) as uow:
        yield uow


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


def get_correlation_id(request: Request) -> str:
    cid: str = request.state.correlation_id
    return cid


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise errors.AuthRequired("a bearer token is required")
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.authenticate(credentials.credentials)
    if principal is None:
        raise errors.AuthRequired("the bearer token is not valid")
    return principal


def check_role(principal: Principal, role: Role) -> Principal:
    """The principal if its role is at least `role`; E_ROLE_FORBIDDEN otherwise."""
    if principal.role < role:
        raise errors.RoleForbidden(f"this needs the {role.name} role")
    return principal


def require(role: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        return check_role(principal, role)

    return check


def caller_for(request: Request, principal: Principal) -> Caller:
    """Who asks (already authorised) and how the events of their request are stamped."""
    runtime: ServiceRuntime = request.app.state.runtime
    settings: GatewaySettings = request.app.state.settings
    return Caller(
        principal=principal,
        source=runtime.source,
        correlation_id=get_correlation_id(request),
        settings=settings,
        secret_box=get_secret_box(request),
    )


def caller_with(role: Role) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """The caller of a request that changes something: who, and how its events are stamped."""

    # A default, not `Annotated`: annotations are strings here, and `role` is not a global.
    async def build(
        request: Request,
        principal: Principal = Depends(require(role)),  # noqa: B008
    ) -> Caller:
        return caller_for(request, principal)

    return build


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Uow = Annotated[UnitOfWork, Depends(get_uow)]
ReadUow = Annotated[UnitOfWork, Depends(get_read_uow)]
Box = Annotated[SecretBox, Depends(get_secret_box)]
CorrelationId = Annotated[str, Depends(get_correlation_id)]
Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Operator = Annotated[Principal, Depends(require(Role.operator))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
OperatorCaller = Annotated[Caller, Depends(caller_with(Role.operator))]
AdminCaller = Annotated[Caller, Depends(caller_with(Role.admin))]
ViewerCaller = Annotated[Caller, Depends(caller_with(Role.viewer))]
