"""The UI's sections, in the order the navigation shows them.

A page of a new section adds its `NavItem` here with the least role that may open it; people
below that role never see the link, and the page's own route still checks the role.

An `optional` item is a slot for a section that another part of the system brings: it is
shown only while the app serves its path (`ui.install` records what it serves), so the
navigation never links to a page that is not there. The query console (`POST /query` and its
page, built on another branch) fills the "Query" slot by adding its router, `ui/pages/query.py`
serving `/ui/query`, to `ui.PAGES`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from freshet.gateway.auth import Role
from freshet.gateway.ui.session import UiUser


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    least_role: Role
    optional: bool = False


NAV: list[NavItem] = [
    NavItem("Endpoints", "/ui/endpoints", Role.viewer),
    NavItem("Runs", "/ui/runs", Role.viewer),
    NavItem("Datasets", "/ui/datasets", Role.viewer),
    NavItem("Refreshes", "/ui/refreshes", Role.viewer),
    NavItem("Query", "/ui/query", Role.viewer, optional=True),
    NavItem("Audit", "/ui/audit", Role.admin),
]


def nav_for(user: UiUser | None, served: Collection[str] = ()) -> list[NavItem]:
    if user is None:
        return []
    return [
        item
        for item in NAV
        if user.principal.role >= item.least_role and (not item.optional or item.path in served)
    ]
