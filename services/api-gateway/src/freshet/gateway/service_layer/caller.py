"""Who is asking, and what their request's events carry."""

from __future__ import annotations

from dataclasses import dataclass

from freshet.catalog.secrets import SecretBox
from freshet.gateway.auth import Principal
from freshet.gateway.settings import GatewaySettings


@dataclass(frozen=True)
class Caller:
    principal: Principal
    # CloudEvents `source` and correlation id of the events this request writes.
    source: str
    correlation_id: str
    settings: GatewaySettings
    secret_box: SecretBox
