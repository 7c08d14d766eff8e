"""The endpoint form: fields from each connector's config model, and form data to the REST
request models (`EndpointCreate`, `EndpointUpdate`), which the service layer then validates
exactly as it does for the API.

Secret values are read from the form and never written back into a page: a form shown again
after an error asks for them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from freshet.catalog import Endpoint
from freshet.connectors import CONFIG_MODELS, KINDS
from freshet.gateway import errors
from freshet.gateway.schemas import EndpointCreate, EndpointUpdate

# Secret names a kind's connector reads, offered as the first secret row.
SECRET_HINTS: dict[str, tuple[str, ...]] = {"postgres": ("password",)}
SECRET_ROWS = 3
M = TypeVar("M", bound=BaseModel)
PREVIEW_POLICIES = ("auto", "manual-only", "disabled")


@dataclass(frozen=True)
class ConfigField:
    name: str
    label: str
    widget: str  # text, number, checkbox, choice, list
    required: bool
    default: Any = None
    options: tuple[str, ...] = ()

    @property
    def input_name(self) -> str:
        return f"config.{self.name}"


def _schema_type(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property's own schema without a `null` alternative, and whether null is allowed."""
    options = prop.get("anyOf")
    if not options:
        return prop, False
    concrete = [o for o in options if o.get("type") != "null"]
    return (concrete[0] if concrete else {}), len(concrete) < len(options)


def config_fields(kind: str) -> list[ConfigField]:
    model: type[BaseModel] | None = CONFIG_MODELS.get(kind)
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        inner, nullable = _schema_type(prop)
        label = str(prop.get("title", name))
        default = prop.get("default")
        if "enum" in inner:
            widget, options = "choice", tuple(str(v) for v in inner["enum"])
        elif inner.get("type") == "boolean":
            widget, options = ("choice", ("true", "false")) if nullable else ("checkbox", ())
        elif inner.get("type") == "integer":
            widget, options = "number", ()
        elif inner.get("type") == "array":
            widget, options = "list", ()
        else:
            widget, options = "text", ()
        fields.append(ConfigField(name, label, widget, name in required, default, options))
    return fields


@dataclass
class Draft:
    """What the form shows: the values typed (never secret values) and the errors found."""

    name: str = ""
    kind: str = KINDS[0]
    config: dict[str, str] = field(default_factory=dict)
    preview_policy: str = "auto"
    labels: str = ""
    run_timeout_s: str = ""
    ingest_command: str = ""
    secret_names: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, endpoint: Endpoint) -> Draft:
        return cls(
            name=endpoint.name,
            kind=endpoint.kind,
            config={k: _show(v) for k, v in endpoint.config.items()},
            preview_policy=endpoint.preview_policy,
            labels=", ".join(str(x) for x in endpoint.labels),
            run_timeout_s=str(endpoint.run_timeout_s or ""),
            ingest_command="\n".join(str(a) for a in endpoint.ingest_command or ()),
            secret_names=[str(n) for n in endpoint.secret_names],
        )

    def error_for(self, name: str) -> str | None:
        for error in self.errors:
            loc = [str(p) for p in error.get("loc", ())]
            if name in loc[-2:]:
                return str(error.get("msg", ""))
        return None


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _config(form: FormData, kind: str, draft: Draft) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for f in config_fields(kind):
        raw = _text(form, f"config.{kind}.{f.name}")
        draft.config[f.name] = raw
        if f.widget == "checkbox":
            config[f.name] = raw == "true"
            draft.config[f.name] = "true" if raw == "true" else "false"
        elif not raw:
            continue
        elif f.widget == "number":
            config[f.name] = int(raw) if raw.lstrip("-").isdigit() else raw
        elif f.widget == "list":
            config[f.name] = [part.strip() for part in raw.split(",") if part.strip()]
        elif f.widget == "choice" and f.options == ("true", "false"):
            config[f.name] = raw == "true"
        else:
            config[f.name] = raw
    return config


def _common(form: FormData, draft: Draft, *, ingest_allowed: bool) -> dict[str, Any]:
    draft.preview_policy = _text(form, "preview_policy") or "auto"
    draft.labels = _text(form, "labels")
    draft.run_timeout_s = _text(form, "run_timeout_s")
    body: dict[str, Any] = {
        "preview_policy": draft.preview_policy,
        "labels": [x.strip() for x in draft.labels.split(",") if x.strip()],
        "run_timeout_s": draft.run_timeout_s or None,
    }
    if ingest_allowed:
        draft.ingest_command = _text(form, "ingest_command")
        argv = [line.strip() for line in draft.ingest_command.splitlines() if line.strip()]
        body["ingest_command"] = argv or None
    return body


def _new_secrets(form: FormData) -> tuple[dict[str, str], list[str]]:
    secrets: dict[str, str] = {}
    for i in range(SECRET_ROWS):
        name = _text(form, f"secret_name_{i}")
        value = form.get(f"secret_value_{i}")
        if name and isinstance(value, str) and value:
            secrets[name] = value
    return secrets, sorted(secrets)


def _validated(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # Locations and messages only, as the API's own validation errors: never the input.
        details = [
            {"loc": ["body", *(str(p) for p in e["loc"])], "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise errors.ValidationFailed("the endpoint is invalid", details=details) from None


def parse_new(form: FormData, *, ingest_allowed: bool) -> tuple[Draft, EndpointCreate | None]:
    """The draft to show again, and the request, or None with `draft.errors` set."""
    draft = Draft(name=_text(form, "name"), kind=_text(form, "kind") or KINDS[0])
    body = _common(form, draft, ingest_allowed=ingest_allowed)
    secrets, draft.secret_names = _new_secrets(form)
    body.update(name=draft.name, kind=draft.kind, secrets=secrets)
    body["config"] = _config(form, draft.kind, draft)
    try:
        return draft, _validated(EndpointCreate, body)
    except errors.ApiError as exc:
        draft.errors = list(exc.details or [])
        return draft, None


def parse_change(
    form: FormData, endpoint: Endpoint, *, ingest_allowed: bool
) -> tuple[Draft, EndpointUpdate | None]:
    draft = Draft.of(endpoint)
    draft.name = _text(form, "name")
    body = _common(form, draft, ingest_allowed=ingest_allowed)
    body["name"] = draft.name
    body["config"] = _config(form, endpoint.kind, draft)
    changes: dict[str, str | None] = {}
    for name in endpoint.secret_names:
        replacement = form.get(f"secret_replace.{name}")
        if form.get(f"secret_remove.{name}") == "true":
            changes[str(name)] = None
        elif isinstance(replacement, str) and replacement:
            changes[str(name)] = replacement
    added, _ = _new_secrets(form)
    changes.update(added)
    body["secrets"] = changes or None
    if not ingest_allowed:
        body.pop("ingest_command", None)
    try:
        return draft, _validated(EndpointUpdate, body)
    except errors.ApiError as exc:
        draft.errors = list(exc.details or [])
        return draft, None
