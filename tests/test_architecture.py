"""The layering of ``callxml``, checked on the source: imports point down only, and no cycles.

Every ``import`` in the package counts — at module level, inside functions and under
``TYPE_CHECKING`` — because an import hidden in a function still ties the two modules together;
hiding it only moves the failure from import time to run time. The allowed edges below are the
architecture drawn in ``docs/architecture.md``: change both together.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import callxml

SOURCE = Path(callxml.__file__).parent

#: Layer -> the layers it may import (besides itself). Read top to bottom: the command line sits
#: on everything; the engine and the simulator on the runtime or the interpreter; the runtime
#: joins the protocol layers; the pure layers (markup, sip, sdp, media) import only what is below
#: them. ``errors`` is the root every layer may raise from.
ALLOWED: dict[str, set[str]] = {
    "cli": {
        "engine",
        "simulator",
        "runtime",
        "interpreter",
        "markup",
        "webhooks",
        "sip.aio",
        "sip",
        "sdp",
        "media",
        "audio",
        "errors",
    },
    "engine": {
        "runtime",
        "interpreter",
        "markup",
        "webhooks",
        "signature",
        "sip.aio",
        "sip",
        "sdp",
        "media",
        "audio",
        "errors",
    },
    "testing": {"simulator", "webhooks", "errors"},
    "simulator": {"interpreter", "markup", "webhooks", "sip", "sdp", "errors"},
    "runtime": {
        "interpreter",
        "markup",
        "webhooks",
        "sip.aio",
        "sip",
        "sdp",
        "media",
        "audio",
        "errors",
    },
    "interpreter": {"markup", "webhooks", "errors"},
    "webhooks": {"signature", "errors"},
    "audio": {"media", "errors"},
    "sip.aio": {"sip", "errors"},
    "markup": {"sip", "errors"},
    "sdp": {"media.suites", "errors"},
    "sip": {"errors"},
    "media": {"errors"},
    "signature": {"errors"},
    "errors": set(),
}
#: The top-level package is the public façade: it may name anything (lazily, see its docstring).
ALLOWED["(package)"] = set(ALLOWED) | {"media.suites"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in SOURCE.rglob("*.py"):
        parts = ["callxml", *path.relative_to(SOURCE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> Iterator[str]:
    """Every callxml module ``module`` imports, wherever the import statement stands."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # ``from package import submodule`` depends on the submodule, not on what the
            # package's __init__ re-exports; any other name is the package's own attribute.
            names = [
                f"{name}.{alias.name}" if f"{name}.{alias.name}" in MODULES else name
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name in MODULES and name != module:
                yield name


GRAPH = {module: set(_imports(module)) for module in MODULES}


def layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "(package)"
    if parts[:2] == ["sip", "aio"]:
        return "sip.aio"
    if parts[:2] == ["media", "suites"]:
        return "media.suites"
    return parts[0]


def _allowed(source: str, target: str) -> bool:
    a, b = layer(source), layer(target)
    if a == b or (a == "media" and b == "media.suites") or (a == "media.suites" and b == "media"):
        return True
    if b == "media.suites":
        return "media.suites" in ALLOWED[a] or "media" in ALLOWED[a]
    return b in ALLOWED.get(a, set())


def test_every_layer_is_in_the_table() -> None:
    unknown = {layer(m) for m in MODULES} - set(ALLOWED) - {"media.suites"}
    assert not unknown, f"layers missing from ALLOWED (and docs/architecture.md): {unknown}"


def test_imports_point_down_only() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if not _allowed(source, target)
    )
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == [], "modules that import each other (directly or through others)"


def test_the_checker_sees_hidden_imports() -> None:
    """The walk finds imports inside functions and under TYPE_CHECKING (it would miss a cycle
    otherwise): markup's verbs name the Target type only for type checking."""
    assert "callxml.sip.target" in GRAPH["callxml.markup.verbs"]
    assert "callxml.runtime.phone" in GRAPH["callxml.cli.call"]


def test_import_callxml_stays_cheap_and_every_public_name_resolves() -> None:
    """``import callxml`` loads only the errors (the CLI's start-up time depends on it); each
    name in ``__all__`` then resolves to the object its defining module exports."""
    code = "import sys, callxml; print(sorted(m for m in sys.modules if m.startswith('callxml')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "['callxml', 'callxml.errors']"
    for name in callxml.__all__:
        assert getattr(callxml, name) is not None, name
    assert callxml.Phone is importlib.import_module("callxml.runtime.phone").Phone
    assert callxml.simulate is importlib.import_module("callxml.simulator").simulate
    assert "Phone" in dir(callxml)
