"""Templates and what every page gets: the user, navigation, CSRF token, flash, time format."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, FormatException, Options
from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from freshet.catalog.clock import utcnow
from freshet.catalog.masks import MASKED
from freshet.gateway.ui.navigation import nav_for
from freshet.gateway.ui.session import UiUser, current_user, form_csrf, take_flash, viewer_zone

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Finished runs and other states (refresh jobs and tables, audit outcomes; any case), and
# the badge style (and so colour) each gets.
BADGES = {
    "SUCCEEDED": "ok",
    "FAILED": "bad",
    "CANCELLED": "muted",
    "SKIPPED": "muted",
    "QUEUED": "wait",
    "RUNNING": "busy",
    "IN_PROGRESS": "busy",
    "COMPLETED": "ok",
    "WAITING": "wait",
    "REQUESTED": "busy",
    "JOINED": "busy",
    "STARTED": "busy",
    "SAMPLED": "ok",
    "PERSISTED": "ok",
    "STORED": "ok",
    "CHANGED": "ok",
    "REPLAYED": "ok",
    "RESUMED": "ok",
    "REFUSED": "bad",
    "THROTTLED": "wait",
    "PAUSED": "wait",
    "DROPPED": "muted",
    "PURGED": "muted",
    "STALE_IGNORED": "muted",
}


class Clock:
    """Times as the viewer reads them: in their zone, absolute and relative to now."""

    def __init__(self, zone: ZoneInfo, now: datetime) -> None:
        self.zone = zone
        self.now = now

    def local(self, value: datetime) -> datetime:
        return value.astimezone(self.zone)

    def absolute(self, value: datetime) -> str:
        return self.local(value).strftime("%Y-%m-%d %H:%M:%S %Z")

    def at(self, value: datetime | None) -> Markup:
        if value is None:
            return Markup('<span class="muted">—</span>')
        return Markup('<time datetime="{}">{}</time>').format(
            value.astimezone(UTC).isoformat(), self.absolute(value)
        )

    def ago(self, value: datetime | None) -> str:
        if value is None:
            return "never"
        seconds = (self.now - value).total_seconds()
        text = _span(abs(seconds))
        if text == "just now":
            return text
        return f"{text} ago" if seconds >= 0 else f"in {text}"

    def both(self, value: datetime | None) -> Markup:
        """'5 min ago' with the absolute time beside it (and in the element's datetime)."""
        if value is None:
            return Markup('<span class="muted">never</span>')
        return Markup('<time datetime="{}">{}</time> <span class="muted">({})</span>').format(
            value.astimezone(UTC).isoformat(), self.ago(value), self.absolute(value)
        )

    def input_value(self, value: datetime | None) -> str:
        """For `<input type="datetime-local">`, in the viewer's zone."""
        return "" if value is None else self.local(value).strftime("%Y-%m-%dT%H:%M")

    def parse_input(self, raw: str | None) -> datetime | None:
        """A `datetime-local` value read in the viewer's zone; ValueError if it is not one."""
        if not raw:
            return None
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return parsed.astimezone(UTC)


def _span(seconds: float) -> str:
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def age(delta: timedelta | None) -> str:
    return "unknown" if delta is None else _span(abs(delta.total_seconds()))


def cron_words(cron: str | None) -> str:
    """A cron expression in words ("Every 5 minutes"); six fields have seconds first."""
    if not cron:
        return "Manual only"
    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    try:
        return str(ExpressionDescriptor(cron, options).get_description())
    except (FormatException, ValueError, IndexError, KeyError):
        return cron


def parse_time(value: Any) -> datetime | None:
    """An ISO time stored in a JSON payload, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def badge(status: str | None) -> Markup:
    if not status:
        return Markup('<span class="badge muted">none</span>')
    return Markup('<span class="badge {}">{}</span>').format(
        BADGES.get(status.upper(), "muted"), status.replace("_", " ").lower().capitalize()
    )


def filesize(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value):,} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def thousands(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def interval(seconds: float | None) -> str:
    """A refresh interval in words: "30 s", "15 min", "6 h", "2 days" (rounded down)."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    if seconds < 86400:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 86400:g} days"


def cell(value: Any, limit: int = 200) -> Markup:
    """A preview cell: NULL marked, long text clipped with a visible truncation mark."""
    if value is None:
        return Markup('<span class="null">NULL</span>')
    if value == MASKED:
        return Markup('<span class="masked-value">{}</span>').format(MASKED)
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return Markup("{}").format(text)
    return Markup('{}<span class="clip" title="clipped: {} characters in all">…</span>').format(
        text[:limit], len(text)
    )


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=duration,
        age=age,
        cron_words=cron_words,
        badge=badge,
        cell=cell,
        parse_time=parse_time,
        filesize=filesize,
        thousands=thousands,
        interval=interval,
        span=lambda seconds: _span(abs(float(seconds))) if seconds is not None else "unknown",
    )
    env.globals["escape"] = escape
    return env


ENV = _environment()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    user: UiUser | None = None,
) -> HTMLResponse:
    # Cookies set while building the page (nonce, flash), copied onto the answer.
    cookies = Response()
    user = user or current_user(request)
    values: dict[str, Any] = {
        "request": request,
        "user": user,
        "nav": nav_for(user, getattr(request.app.state, "ui_paths", ())),
        "path": request.url.path,
        "csrf": form_csrf(request, cookies),
        "flash": take_flash(request, cookies),
        "t": Clock(viewer_zone(request), utcnow()),
        "correlation_id": getattr(request.state, "correlation_id", ""),
        # The page's live stream is caught up from here (see `live`): what it read is older.
        "live_since": f"{getattr(request.state, 'received_at', 0.0):.3f}",
    }
    values.update(context or {})
    response = HTMLResponse(ENV.get_template(template).render(values), status_code=status)
    response.raw_headers.extend(h for h in cookies.raw_headers if h[0] == b"set-cookie")
    return response
