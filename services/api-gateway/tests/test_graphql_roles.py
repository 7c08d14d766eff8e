"""Who may use which GraphQL field: every Query and Mutation field, read from the schema.

The table below is the specification; a field added to the schema without a row here fails
`test_the_table_covers_every_root_field_of_the_schema`, and a field declared with another role
than its row fails `test_each_field_is_declared_with_the_role_of_the_table`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from freshet.gateway.auth import Role
from freshet.gateway.graphql import schema
from freshet.gateway.graphql.permissions import roles_of

Auth = Callable[[str], dict[str, str]]
CreateEndpoint = Callable[..., Awaitable[dict[str, Any]]]

AUTH_CODES = {"E_AUTH_REQUIRED", "E_ROLE_FORBIDDEN"}
SOME_ID = str(uuid.uuid4())

# "Type.field": (least role, an operation that uses the field and nothing else).
FIELDS: dict[str, tuple[Role, str]] = {
    "Query.collections": (Role.viewer, "{ collections { id } }"),
    "Query.collection": (Role.viewer, f'{{ collection(id: "{SOME_ID}") {{ id }} }}'),
    "Query.collectionRuns": (Role.viewer, "{ collectionRuns { id } }"),
    "Query.endpoints": (Role.viewer, "{ endpoints { id } }"),
    "Query.endpoint": (Role.viewer, f'{{ endpoint(id: "{SOME_ID}") {{ id }} }}'),
    "Query.run": (Role.viewer, f'{{ run(id: "{SOME_ID}") {{ id }} }}'),
    "Mutation.createCollection": (
        Role.admin,
        f'mutation {{ createCollection(input: {{endpointId: "{SOME_ID}"}}) {{ id }} }}',
    ),
    "Mutation.updateCollection": (
        Role.admin,
        f'mutation {{ updateCollection(id: "{SOME_ID}", input: {{isEnabled: false}}) {{ id }} }}',
    ),
    "Mutation.deleteCollection": (Role.admin, f'mutation {{ deleteCollection(id: "{SOME_ID}") }}'),
    "Mutation.triggerCollection": (
        Role.operator,
        f'mutation {{ triggerCollection(collectionId: "{SOME_ID}") {{ id }} }}',
    ),
    "Mutation.triggerEndpointCollection": (
        Role.operator,
        f'mutation {{ triggerEndpointCollection(endpointId: "{SOME_ID}") {{ id }} }}',
    ),
    "Mutation.cancelRun": (Role.operator, f'mutation {{ cancelRun(id: "{SOME_ID}") {{ id }} }}'),
    "Query.catalogDatasetPreview": (
        Role.viewer,
        f'{{ catalogDatasetPreview(id: "{SOME_ID}") {{ datasetId }} }}',
    ),
    "Query.previewRequest": (Role.viewer, f'{{ previewRequest(id: "{SOME_ID}") {{ id }} }}'),
    "Mutation.previewDataset": (
        Role.operator,
        f'mutation {{ previewDataset(id: "{SOME_ID}") {{ datasetId }} }}',
    ),
    "Mutation.updateEndpointPreviewSettings": (
        Role.admin,
        f'mutation {{ updateEndpointPreviewSettings(id: "{SOME_ID}", '
        'input: {previewPolicy: "auto"}) { id } }',
    ),
    "Mutation.updateDatasetPreviewSettings": (
        Role.admin,
        f'mutation {{ updateDatasetPreviewSettings(id: "{SOME_ID}", '
        "input: {optedOut: false}) { datasetId } }",
    ),
}


def schema_root_fields() -> set[str]:
    """Every field of Query and Mutation, as graphql-core sees the schema."""
    core = schema._schema
    roots = [t for t in (core.query_type, core.mutation_type, core.subscription_type) if t]
    return {f"{root.name}.{name}" for root in roots for name in root.fields}


def test_the_table_covers_every_root_field_of_the_schema() -> None:
    assert set(FIELDS) == schema_root_fields()


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_each_field_is_declared_with_the_role_of_the_table(name: str) -> None:
    type_name, field_name = name.split(".")
    field = schema.get_field_for_type(field_name=field_name, type_name=type_name)

    assert field is not None
    assert roles_of(field) == [FIELDS[name][0]]


async def post(client: httpx.AsyncClient, query: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    # GraphQL errors, auth errors included, are answered with 200.
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


@pytest.mark.parametrize("name", sorted(FIELDS))
async def test_each_field_needs_its_least_role(
    client: httpx.AsyncClient, auth: Auth, tokens: dict[str, str], name: str
) -> None:
    least, query = FIELDS[name]
    field = name.split(".")[1]

    anonymous = [
        await post(client, query, {}),
        await post(client, query, {"Authorization": "Bearer not-a-known-token"}),
        await post(client, query, {"Authorization": f"Basic {tokens['admin']}"}),
        await post(client, query, {"Authorization": "Bearer "}),
    ]
    for body in anonymous:
        assert codes(body) == ["E_AUTH_REQUIRED"], body
        assert body["errors"][0]["path"] == [field]
        assert body["data"] is None or body["data"][field] is None

    for role in Role:
        body = await post(client, query, auth(role.name))
        if role < least:
            assert codes(body) == ["E_ROLE_FORBIDDEN"], (role, body)
            assert body["errors"][0]["message"] == f"this needs the {least.name} role"
        else:
            assert not AUTH_CODES & set(codes(body)), (role, body)


async def test_an_unknown_token_is_told_apart_from_no_token(client: httpx.AsyncClient) -> None:
    query = FIELDS["Query.collections"][1]

    none = await post(client, query, {})
    unknown = await post(client, query, {"Authorization": "Bearer not-a-known-token"})

    assert none["errors"][0]["message"] == "a bearer token is required"
    assert unknown["errors"][0]["message"] == "the bearer token is not valid"


async def test_nothing_is_written_when_the_role_is_too_low(
    client: httpx.AsyncClient, auth: Auth, create_endpoint: CreateEndpoint
) -> None:
    collection_id = (await create_endpoint())["collection_id"]

    refused = await post(
        client,
        f'mutation {{ updateCollection(id: "{collection_id}", input: {{isEnabled: false}}) '
        "{ id } }",
        auth("operator"),
    )
    after = await post(
        client, f'{{ collection(id: "{collection_id}") {{ isEnabled }} }}', auth("viewer")
    )

    assert codes(refused) == ["E_ROLE_FORBIDDEN"]
    assert after["data"] == {"collection": {"isEnabled": True}}
