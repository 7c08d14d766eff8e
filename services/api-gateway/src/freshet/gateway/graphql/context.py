"""The per-request GraphQL context: who asks, the catalog, and per-request loaders."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from freshet.catalog import Collection, Endpoint, UnitOfWork
from freshet.catalog.secrets import SecretBox
from freshet.gateway.auth import Principal, TokenStore
from freshet.gateway.service_layer.caller import Caller
from freshet.gateway.settings import GatewaySettings
from freshet.kit.service import ServiceRuntime

NO_BEARER = "a bearer token is required"
UNKNOWN_BEARER = "the bearer token is not valid"


# Up to this many distinct ids are read one by one; more, and the whole (small) table is
# read once instead.
ONE_BY_ONE = 10


class Loaders:
    """Per-request caches for the `endpoint` / `collection` fields of list items: all the ids a
    list asks for are loaded together in one read transaction, each once (no N+1 per item)."""

    def __init__(self, context: GraphQLContext) -> None:
        self._context = context
        self.endpoint: DataLoader[uuid.UUID, Endpoint | None] = DataLoader(load_fn=self._endpoints)
        self.collection_of_endpoint: DataLoader[uuid.UUID, Collection | None] = DataLoader(
            load_fn=self._collections_of_endpoints
        )

    async def _endpoints(self, ids: Sequence[uuid.UUID]) -> list[Endpoint | None]:
        async with self._context.read() as uow:
            if len(ids) <= ONE_BY_ONE:
                return [await uow.endpoints.get(i) for i in ids]
            by_id = {e.id: e for e in await uow.endpoints.all()}
        return [by_id.get(i) for i in ids]

    async def _collections_of_endpoints(self, ids: Sequence[uuid.UUID]) -> list[Collection | None]:
        async with self._context.read() as uow:
            if len(ids) <= ONE_BY_ONE:
                return [await uow.collections.for_endpoint(i) for i in ids]
            by_endpoint = {c.endpoint_id: c for c in await uow.collections.all()}
        return [by_endpoint.get(i) for i in ids]


class GraphQLContext(BaseContext):
    def __init__(
        self,
        *,
        principal: Principal | None,
        auth_error: str,
        runtime: ServiceRuntime,
        settings: GatewaySettings,
        secret_box: SecretBox,
        correlation_id: str,
    ) -> None:
        super().__init__()
        self.principal = principal
        # Why there is no principal (no token, or an unknown one), for E_AUTH_REQUIRED.
        self.auth_error = auth_error
        self.runtime = runtime
        self.settings = settings
        self.secret_box = secret_box
        self.correlation_id = correlation_id
        self.loaders = Loaders(self)

    def read(self) -> UnitOfWork:
        """A read-only unit of work (queries); use with `async with`."""
        return UnitOfWork(self.runtime.db, read_only=True)

    def write(self) -> UnitOfWork:
        """A writing unit of work (mutations); the service functions commit it."""
        return UnitOfWork(self.runtime.db)

    def caller(self) -> Caller:
        """The caller of a mutation; only resolvers behind a role check ask for it."""
        assert self.principal is not None, "a role check must run before the caller is built"
        return Caller(
            principal=self.principal,
            source=self.runtime.source,
            correlation_id=self.correlation_id,
            settings=self.settings,
            secret_box=self.secret_box,
        )

    def forget(self) -> None:
        """Drop what the loaders cached: a mutation may have changed it."""
        self.loaders = Loaders(self)


def authenticate(connection: HTTPConnection) -> tuple[Principal | None, str]:
    """The principal of the `Authorization: Bearer` header, or None and why not.

    Never raises: GraphiQL (GET without a token) must still load, and each field decides
    whether it needs a principal (E_AUTH_REQUIRED then).
    """
    header = connection.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, NO_BEARER
    tokens: TokenStore = connection.app.state.tokens
    principal = tokens.authenticate(token)
    return principal, "" if principal is not None else UNKNOWN_BEARER


async def get_context(connection: HTTPConnection) -> GraphQLContext:
    """FastAPI dependency building the context from the app's state and the request."""
    principal, auth_error = authenticate(connection)
    state = connection.app.state
    correlation_id = getattr(connection.state, "correlation_id", None)
    return GraphQLContext(
        principal=principal,
        auth_error=auth_error,
        runtime=state.runtime,
        settings=state.settings,
        secret_box=state.secret_box,
        correlation_id=str(correlation_id) if correlation_id else str(uuid.uuid4()),
    )
