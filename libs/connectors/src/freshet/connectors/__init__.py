"""Source connectors: test, introspect and sample the databases Freshet catalogs.

`connector_for(kind, config, secrets)` builds a connector; every failure is a `ConnectorError`
whose message is safe to show and whose `transient` flag says whether a retry may help.
"""

from freshet.connectors.connector import Connector
from freshet.connectors.errors import ConnectorError, sanitise
from freshet.connectors.models import ColumnInfo, ForeignKeyInfo, Sample, TableInfo
from freshet.connectors.registry import (
    CONFIG_MODELS,
    KINDS,
    ConnectorFactory,
    connector_factory,
    connector_for,
)
from freshet.connectors.values import BINARY_NOTE, binary_note, json_safe

__all__ = [
    "BINARY_NOTE",
    "CONFIG_MODELS",
    "KINDS",
    "ColumnInfo",
    "Connector",
    "ConnectorError",
    "ConnectorFactory",
    "ForeignKeyInfo",
    "Sample",
    "TableInfo",
    "binary_note",
    "connector_factory",
    "connector_for",
    "json_safe",
    "sanitise",
]
