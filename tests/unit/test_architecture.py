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


# Every part of Linli by layer (docs/architecture.md "Layers"); a part is what bench/import_graph.py
# draws: a package one level down, a feature's routes.py apart from its feature.
LAYERS: dict[str, tuple[str, ...]] = {
    "ground": ("assistant.core",),
    "libraries": ("knowledge_base", "intents", "connectors.channels", "connectors.forms", "connectors.sandbox",
                  "connectors.services"),
    "features": ("assistant.dialogue", "assistant.escalation", "assistant.speech", "assistant.knowledge",
                 "assistant.residents", "assistant.wechat", "assistant.analytics", "assistant.kb_admin"),
    "app": ("assistant.api", "assistant.cli", "assistant.console", "assistant.admin", "assistant.pages",
            "assistant.security", "assistant.services", "assistant.dependencies", "assistant.ops",
            "assistant.cluster", "assistant.background", "assistant.residents.routes", "assistant.wechat.routes",
            "assistant.admin.routes", "assistant.console.routes", "assistant.pages.routes",
            "assistant.channels", "assistant.channel_plugin", "assistant.pages.channel", "assistant.residents.channel",
            "assistant.wechat.channel"),
}
ORDER = list(LAYERS)


def _layer(part: str) -> str:
    found = [layer for layer, parts in LAYERS.items() if part in parts]
    assert found, f"{part} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return found[0]


def _graph() -> dict[str, set[str]]:
    from bench.import_graph import edges  # noqa: PLC0415 - the tool that draws the graph for people

    graph: dict[str, set[str]] = {}
    for source, target in edges():
        graph.setdefault(source, set()).add(target)
    return graph


def test_every_import_points_down_or_across_at_every_level() -> None:
    """app → features → libraries → ground: nothing imports a layer above its own."""
    upward = [f"{source} ({_layer(source)}) imports {target} ({_layer(target)})"
              for source, targets in _graph().items() for target in targets
              if ORDER.index(_layer(target)) > ORDER.index(_layer(source))]
    assert upward == []


def test_no_import_cycle_among_features_or_below() -> None:
    """A cycle makes two parts one: neither can be changed or tested alone. Only the app's own
    wiring (the container and the ops endpoints it serves) may know each other."""
    from bench.import_graph import cycles  # noqa: PLC0415

    tangled = [group for group in cycles(_graph()) if any(_layer(part) != "app" for part in group)]
    assert tangled == []


# The modules that read the environment's settings (`get_settings()`) and hand them on: the
# processes' entry points and the migrations Alembic runs. Everything else is given its settings
# by the container (assistant/services.py) or by its caller.
ENTRY_POINTS = ("assistant/cli.py", "assistant/api.py", "assistant/cluster.py", "assistant/core/settings.py",
                "assistant/core/migrations/")


def _names_used(path: Path) -> list[tuple[int, str]]:
    used: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            used.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            used.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            used.extend((node.lineno, alias.name) for alias in node.names)
    return used


def test_only_the_entry_points_read_the_global_settings() -> None:
    """A constructor that falls back to `get_settings()` reads the environment behind its
    caller's back: a test's or a second deployment's settings are silently not the ones used."""
    readers = [f"{path.relative_to(PROJECT_ROOT)}:{line}"
               for package in ("assistant", "connectors", "knowledge_base", "intents")
               for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
               if not str(path.relative_to(PROJECT_ROOT)).startswith(ENTRY_POINTS)
               for line, name in _names_used(path) if name == "get_settings"]
    assert readers == []


# The modules that make engines and locks. Engines live in a `Databases` (assistant/core/db.py), one
# per container, never in a module: a second container (a test's, another deployment's settings in
# one process) must not get the first one's engines, migrated-or-not flags or lock pools.
ENGINE_MODULES = ("assistant/core/db.py", "assistant/core/locks.py")
# The one module-level container there, and why it is not an engine registry: SQLite's in-process
# locks are the process's (every lock on one file and namespace must be the same lock).
PROCESS_WIDE = {("assistant/core/locks.py", "_local_locks")}
MUTABLE = (ast.Dict, ast.Set, ast.List, ast.DictComp, ast.SetComp, ast.ListComp)
MUTABLE_CALLS = {"dict", "set", "list", "defaultdict", "OrderedDict", "WeakValueDictionary", "WeakKeyDictionary"}
CACHES = {"cache", "lru_cache", "cached"}


def _called(node: ast.expr) -> str | None:
    func = node.func if isinstance(node, ast.Call) else node
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _module_level_state(relative: str) -> list[str]:
    found = []
    for node in ast.parse((PROJECT_ROOT / relative).read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            annotation = ast.unparse(node.annotation) if isinstance(node, ast.AnnAssign) else ""
            mutable = isinstance(node.value, MUTABLE) or (isinstance(node.value, ast.Call)
                                                          and _called(node.value) in MUTABLE_CALLS)
            found += [f"{relative}:{node.lineno} {name}" for name in names
                      if (mutable or "Engine" in annotation) and (relative, name) not in PROCESS_WIDE]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"{relative}:{node.lineno} {node.name} (@{_called(d)})" for d in node.decorator_list
                      if _called(d) in CACHES]
    return found


def test_no_module_keeps_engines() -> None:
    assert [state for relative in ENGINE_MODULES for state in _module_level_state(relative)] == []
