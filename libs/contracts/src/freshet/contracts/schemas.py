"""JSON Schema of every event, as committed under docs/events/.

Regenerate with `python -m freshet.contracts.schemas docs/events`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from freshet.contracts.events import EVENT_MODELS, Event
from freshet.contracts.topics import topic_for


def event_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    topic = topic_for(model)
    schema["$id"] = f"urn:freshet:event:{model.event_type}"
    schema["x-freshet"] = {
        "type": model.event_type,
        "topic": topic.name,
        "key": topic.key_field,
        "partitions": topic.partitions,
        "deadLetterTopic": topic.dead_letter,
    }
    return schema


def rendered_schemas() -> dict[str, str]:
    """File name -> file text, for every event."""
    return {
        f"{m.event_type}.json": json.dumps(event_schema(m), indent=2, sort_keys=True) + "\n"
        for m in EVENT_MODELS
    }


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in rendered_schemas().items():
        (folder / name).write_text(text)


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events"))
