"""docs/architecture.md stays true: its handler table is the order in code, and the layers
import one way (the ground imports nothing of Linli; the libraries only the ground and each
other)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from assistant.core.settings import PROJECT_ROOT
from assistant.dialogue.handlers import HANDLER_ORDER

DOC = PROJECT_ROOT / "docs" / "architecture.md"
LINLI_PACKAGES = ("assistant", "knowledge_base", "intents", "connectors", "eval", "bench", "tests")


def test_the_documented_handler_order_is_the_order_in_code() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert [int(n) for n, _ in rows] == list(range(1, len(rows) + 1))
    assert [name for _, name in rows] == [handler.name for handler in HANDLER_ORDER]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(folder: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in LINLI_PACKAGES and not any(module == a or module.startswith(f"{a}.") for a in allowed):
                bad.append(f"{path.relative_to(PROJECT_ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize(("folder", "allowed"), [
    ("assistant/core", ("assistant.core",)),
    ("knowledge_base", ("assistant.core", "knowledge_base", "intents", "connectors")),
    ("intents", ("assistant.core", "knowledge_base", "intents", "connectors")),
    ("connectors", ("assistant.core", "knowledge_base", "intents", "connectors")),
])
def test_layers_import_one_way(folder: str, allowed: tuple[str, ...]) -> None:
    assert _violations(folder, allowed) == []
