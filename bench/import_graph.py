"""The import graph between Linli's parts, drawn from the code: which part imports which (every
import, module-level or inside a function), and the cycles among them. A measurement of
structure, not of speed: issue 30 shows it before and after.

A part is a package one level below the top (`assistant.dialogue`, `connectors.channels`,
`knowledge_base`, `intents`); `assistant.core` is the ground; a feature's `routes.py` is a part of
its own (`assistant.wechat.routes`), in the app layer, and so is its `channel.py` (the channel
declaration naming those routes). Prints the edges with how many
imports make each, then every cycle (a strongly connected group of parts); `--dot FILE` also
writes Graphviz DOT.

    .venv/bin/python -m bench.import_graph [--dot var/imports.dot]
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

from assistant.core.settings import PROJECT_ROOT

TOP = ("assistant", "knowledge_base", "intents", "connectors")
# Packages that are one part as a whole (small, or a library of the layer below).
WHOLE = ("knowledge_base", "intents")


def part_of(module: str) -> str | None:
    """The part a dotted module belongs to, or None outside Linli's packages."""
    names = module.split(".")
    if names[0] not in TOP:
        return None
    if names[0] in WHOLE or len(names) == 1:
        return names[0]
    second = names[1]
    if names[0] == "assistant" and len(names) > 2 and names[2] in ("routes", "channel"):
        # A feature's HTTP routes, and its channel declaration (which names them), belong to the
        # app above it.
        return f"assistant.{second}.{names[2]}"
    if (PROJECT_ROOT / names[0] / second).is_dir():
        return f"{names[0]}.{second}"
    return f"{names[0]}.{second}" if names[0] == "assistant" else names[0]


def module_of(path: Path) -> str:
    relative = path.relative_to(PROJECT_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    """Every module `path` imports (relative imports resolved against its package)."""
    here = module_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.extend([module] if node.module else [f"{module}.{alias.name}" for alias in node.names])
    return found


def edges() -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for top in TOP:
        for path in sorted((PROJECT_ROOT / top).rglob("*.py")):
            source = part_of(module_of(path))
            for module in imports_of(path):
                target = part_of(module)
                if source and target and target != source:
                    counted[(source, target)] += 1
    return counted


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", type=Path, help="also write the graph as Graphviz DOT")
    args = parser.parse_args()
    counted = edges()
    graph: dict[str, set[str]] = {}
    for source, target in counted:
        graph.setdefault(source, set()).add(target)
    parts = sorted({p for edge in counted for p in edge})
    print(f"{len(parts)} parts, {len(counted)} import edges")
    for (source, target), n in sorted(counted.items()):
        print(f"  {source} -> {target} ({n})")
    found = cycles(graph)
    print(f"{len(found)} cycle(s)")
    for group in found:
        print("  " + " <-> ".join(group))
    if args.dot:
        lines = ["digraph linli {", "  rankdir=BT;"]
        in_cycle = {p for group in found for p in group}
        lines += [f'  "{p}"{" [color=red]" if p in in_cycle else ""};' for p in parts]
        lines += [f'  "{s}" -> "{t}" [label={n}];' for (s, t), n in sorted(counted.items())]
        args.dot.parent.mkdir(parents=True, exist_ok=True)
        args.dot.write_text("\n".join([*lines, "}"]) + "\n", encoding="utf-8")
        print(f"wrote {args.dot}")


if __name__ == "__main__":
    main()
