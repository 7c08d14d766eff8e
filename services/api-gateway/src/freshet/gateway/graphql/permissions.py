"""Roles per field: every Query and Mutation field is declared with `role_field(role)`.

`check_roles(Query, Mutation)` runs when the schema is built and refuses a root field without
exactly one role permission, so a field cannot be added without deciding who may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import strawberry
from strawberry.permission import BasePermission
from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField

from freshet.gateway import errors
from freshet.gateway.auth import Role
from freshet.gateway.graphql.context import NO_BEARER, GraphQLContext


class RoleRequired(BasePermission):
    """Raises the gateway's own errors, so their codes reach the client: E_AUTH_REQUIRED
    without a (valid) token, E_ROLE_FORBIDDEN with a role below `role`."""

    role: ClassVar[Role]

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        context = info.context
        if not isinstance(context, GraphQLContext):  # not run through our router: fail closed
            raise errors.AuthRequired(NO_BEARER)
        if context.principal is None:
            raise errors.AuthRequired(context.auth_error)
        if context.principal.role < self.role:
            raise errors.RoleForbidden(f"this needs the {self.role.name} role")
        return True


class ViewerRole(RoleRequired):
    role = Role.viewer


class OperatorRole(RoleRequired):
    role = Role.operator


class AdminRole(RoleRequired):
    role = Role.admin


PERMISSIONS: dict[Role, type[RoleRequired]] = {
    Role.viewer: ViewerRole,
    Role.operator: OperatorRole,
    Role.admin: AdminRole,
}


Resolver = TypeVar("Resolver", bound=Callable[..., Any])


def role_field(role: Role, description: str) -> Callable[[Resolver], Resolver]:
    """`@role_field(Role.viewer, "…")` on a Query or Mutation resolver: a strawberry field that
    only `role` and the roles above it may use; the role is stated in its description.

    (Typed as returning the resolver, as strawberry's own `field(resolver=…)` is: the class
    attribute becomes a StrawberryField at runtime.)
    """

    def declare(resolver: Resolver) -> Resolver:
        field: Resolver = strawberry.field(
            resolver=resolver,
            description=f"{description} Needs the {role.name} role.",
            permission_classes=[PERMISSIONS[role]],
        )
        return field

    return declare


def roles_of(field: StrawberryField) -> list[Role]:
    return [p.role for p in field.permission_classes if issubclass(p, RoleRequired)]


def check_roles(*root_types: type) -> None:
    """Refuse to build a schema with a root field that has no role, or more than one."""
    for root in root_types:
        definition = get_object_definition(root, strict=True)
        for field in definition.fields:
            if len(roles_of(field)) != 1:
                raise TypeError(
                    f"{definition.name}.{field.python_name} must be declared with role_field(); "
                    "every root field needs exactly one role"
                )
