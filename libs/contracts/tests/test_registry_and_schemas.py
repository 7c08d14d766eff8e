"""The topic registry and the committed JSON Schemas agree with the models."""

from __future__ import annotations

import ast
from pathlib import Path

from freshet.contracts import EVENT_MODELS, TOPICS, all_topic_names, topic_for, topic_named
from freshet.contracts.schemas import rendered_schemas

ROOT = Path(__file__).resolve().parents[3]
SRC = Path(__file__).resolve().parents[1] / "src" / "freshet" / "contracts"


def test_every_event_has_exactly_one_topic_with_a_dead_letter_topic() -> None:
    assert {t.event for t in TOPICS} == set(EVENT_MODELS)
    for topic in TOPICS:
        assert topic_for(topic.event) is topic
        assert topic_named(topic.name) is topic
        assert topic.dead_letter == topic.name + ".dlq"
        assert topic.partitions >= 3
    assert len(set(all_topic_names())) == 2 * len(TOPICS)


def test_committed_json_schemas_match_the_models() -> None:
    folder = ROOT / "docs" / "events"
    committed = {p.name: p.read_text() for p in folder.glob("*.json")}
    assert committed == rendered_schemas(), (
        "docs/events is out of date: run `uv run python -m freshet.contracts.schemas docs/events`"
    )


def test_contracts_import_nothing_but_pydantic_and_the_standard_library() -> None:
    import sys

    allowed = {"pydantic", "freshet", "__future__"} | set(sys.stdlib_module_names)
    for path in SRC.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed, f"{path.name} imports {name}"
                if top == "freshet":
                    assert name.startswith("freshet.contracts"), f"{path.name} imports {name}"
