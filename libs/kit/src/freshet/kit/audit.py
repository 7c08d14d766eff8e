"""What every service does with the audit records it committed: count them and log them.

The records themselves are written by `uow.audit.add` in the transaction of the change; this
listener runs after that transaction committed, so the counter and the log line describe only
what was really written.
"""

from __future__ import annotations

import structlog

from freshet.catalog import Database
from freshet.catalog.models import AuditRecord
from freshet.kit import metrics

log = structlog.get_logger("freshet.audit")


def report(records: list[AuditRecord]) -> None:
    for record in records:
        metrics.AUDIT_RECORDS.labels(record.action, record.outcome).inc()
        log.info(
            "audit",
            action=record.action,
            outcome=record.outcome,
            actor=record.actor,
            target_type=record.target_type,
            target_id=record.target_id,
            reason=record.reason,
            audit_correlation_id=record.correlation_id,
        )


def install(db: Database) -> None:
    db.on_audit_commit(report)
