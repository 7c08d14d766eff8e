"""The audit log (admin): who or what did what to which target, why, and how it ended; filtered
by action, outcome, actor, target and time, newest first by keyset pages (`GET /audit`'s
service-layer call)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request, Response

from freshet.catalog import UnitOfWork
from freshet.catalog.audit import AuditFilter, audit_cursor
from freshet.catalog.clock import utcnow
from freshet.catalog.dataset_search import dataset_names
from freshet.catalog.models import AuditRecord
from freshet.gateway import errors
from freshet.gateway.deps import ReadUow
from freshet.gateway.service_layer import audit
from freshet.gateway.ui.rendering import Clock, render
from freshet.gateway.ui.routing import ui_router
from freshet.gateway.ui.session import Admin, viewer_zone

router = ui_router()


PAGE_SIZE = 50
MAX_TEXT = 200
# Suggestions for the action filter (any action can be typed): what the services write.
KNOWN_ACTIONS = (
    "cache.settings",
    "dead_letter.purge",
    "dead_letter.replay",
    "preview.fanout",
    "preview.persist",
    "preview.purge",
    "preview.request",
    "preview.sample",
    "preview.settings",
    "refresh.request",
    "schedule.pause",
    "schedule.resume",
)
KNOWN_TARGETS = ("dataset", "endpoint", "schedule", "dead_letter", "dead_letter_topic")
# Targets that have a page of their own.
TARGET_PAGES = {"dataset": "/ui/datasets/{}", "endpoint": "/ui/endpoints/{}"}


@dataclass
class AuditFilters:
    """The filters as typed in the form (times in the viewer's zone)."""

    action: str = ""
    outcome: str = ""
    actor: str = ""
    target_type: str = ""
    target_id: str = ""
    from_: str = ""
    to: str = ""

    @property
    def is_set(self) -> bool:
        return any(vars(self).values())

    def query(self, **extra: str) -> str:
        values = {k.rstrip("_"): v for k, v in vars(self).items()}
        return urlencode({k: v for k, v in {**values, **extra}.items() if v})


async def _target_names(uow: UnitOfWork, records: list[AuditRecord]) -> dict[str, str]:
    """What the datasets and endpoints records point at are called now ("type:id" -> name);
    targets deleted since have none and show their id."""
    wanted: dict[str, set[uuid.UUID]] = {"dataset": set(), "endpoint": set()}
    for record in records:
        if record.target_type in wanted:
            try:
                wanted[record.target_type].add(uuid.UUID(record.target_id))
            except ValueError:
                continue
    names: dict[str, str] = {}
    for dataset_id, name in (await dataset_names(uow.session, wanted["dataset"])).items():
        names[f"dataset:{dataset_id}"] = name
    if wanted["endpoint"]:
        for endpoint in await uow.endpoints.all():
            if endpoint.id in wanted["endpoint"]:
                names[f"endpoint:{endpoint.id}"] = endpoint.name
    return names


def _text(value: str) -> str | None:
    return value.strip()[:MAX_TEXT] or None


@router.get("/audit")
async def audit_page(request: Request, uow: ReadUow, user: Admin, after: str = "") -> Response:
    q = request.query_params
    shown = AuditFilters(
        action=q.get("action", ""),
        outcome=q.get("outcome", ""),
        actor=q.get("actor", ""),
        target_type=q.get("target_type", ""),
        target_id=q.get("target_id", ""),
        from_=q.get("from", ""),
        to=q.get("to", ""),
    )
    clock = Clock(viewer_zone(request), utcnow())
    problem = None
    records: list[AuditRecord] = []
    try:
        try:
            at_from, at_to = clock.parse_input(shown.from_), clock.parse_input(shown.to)
        except ValueError:
            raise errors.ValidationFailed("from and to must be dates with times") from None
        where = AuditFilter(
            action=_text(shown.action),
            outcome=_text(shown.outcome),
            actor=_text(shown.actor),
            target_type=_text(shown.target_type),
            target_id=_text(shown.target_id),
            at_from=at_from,
            at_to=at_to,
        )
        records = await audit.list_records(uow, where, PAGE_SIZE + 1, after or None)
    except errors.ValidationFailed as exc:
        problem = exc.message
    more = len(records) > PAGE_SIZE
    records = records[:PAGE_SIZE]
    names = await _target_names(uow, records)
    return render(
        request,
        "audit.html",
        {
            "records": records,
            "filter": shown,
            "problem": problem,
            "after": after,
            "older": shown.query(after=audit_cursor(records[-1])) if more else None,
            "actions": KNOWN_ACTIONS,
            "targets": KNOWN_TARGETS,
            "target_pages": TARGET_PAGES,
            "names": names,
        },
        user=user,
    )
