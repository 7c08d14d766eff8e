"""The UI's sections, in the order the navigation shows them.

A page of a new section (refreshes, the query console, the audit log) adds its `NavItem`
here with the least role that may open it; people below that role never see the link, and
the page's own route still checks the role.
"""

from __future__ import annotations

from dataclasses import dataclass

from freshet.gateway.auth import Role
from freshet.gateway.ui.session import UiUser


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    least_role: Role


NAV: list[NavItem] = [
    NavItem("Endpoints", "/ui/endpoints", Role.viewer),
    NavItem("Runs", "/ui/runs", Role.viewer),
    NavItem("Datasets", "/ui/datasets", Role.viewer),
]


def nav_for(user: UiUser | None) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAV if user.principal.role >= item.least_role]
