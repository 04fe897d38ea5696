"""The code's layers: no module-level import cycle, and no module imports a layer above its own.

The layers, lowest first (the README's "Architecture" section says what each holds):

1. ``core``: robot data, units, errors, config, file formats. No threads, no devices.
2. ``gaits``: motion as pure functions of phase and command; the leg IK.
3. ``hal``: the hardware boundary and its backends (hardware, emulated chips, simulation, fake).
4. ``control``: what runs on the control thread: the loop, safety, the supervisor and the
   behaviours it switches, telemetry, the policy runner.
5. ``daemon``: the runtime around the loop: the socket server and its handlers, start-up,
   the daemon and headless runs.
6. ``tools``: the commands people run (plend's subcommands, plenctl, the wizard, the
   tracker, training); nothing below imports them.

A module may import its own layer and the layers below, at module level. An import inside a
function (a backend the registry loads by name, an optional heavy dependency) is not a
module-level import and is not checked here; keep those pointing down too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("plend", "gaits", "policies", "calibration")

# Each rule is a module name, or a package and everything in it ("pkg.*"); the longest rule
# that matches a module places it. A module no rule matches fails the test: place it.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "plend", "plend.core.*", "plend.model.*", "plend.drive.settings", "plend.track.settings",
        "calibration.store", "calibration.drafts",
    ),
    "gaits": ("gaits.*",),
    "hal": ("plend.hal.*",),
    "control": (
        "plend.control.*", "plend.drive.lease", "policies", "policies.contract", "policies.runner",
        "policies.onnx_file", "policies.numpy_onnx", "policies.graph_sizes", "policies.library",
        "policies.timing",
    ),
    "daemon": ("plend.daemon.*", "plend.drive", "plend.drive.controls", "plend.drive.motion"),
    "tools": (
        "plend.main", "plend.plenctl", "plend.pwm_off", "plend.cli.*", "plend.drive.*", "plend.track.*",
        "plend.hal.emulated.operator", "calibration.*", "policies.*",
    ),
}  # fmt: skip
ORDER = list(LAYERS)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _top_level_imports(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: its body, and inside try/if/with blocks
    (but not under ``if TYPE_CHECKING``)."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.Try, ast.If, ast.With)) and not _is_type_checking(node):
            pending.extend(ast.iter_child_nodes(node))  # type: ignore[arg-type]
        elif isinstance(node, ast.ExceptHandler):
            pending.extend(node.body)


def _owner(name: str, known: Mapping[str, Path]) -> str | None:
    """The project module ``name`` is, or lives in (an attribute of a module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(known: Mapping[str, Path]) -> dict[str, set[str]]:
    """For each module, the project modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (_owner(a.name, known) for a in node.names)))
            elif node.module and node.level == 0:
                for alias in node.names:
                    target = _owner(f"{node.module}.{alias.name}", known) or _owner(node.module, known)
                    if target:
                        targets.add(target)
        graph[name] = targets - {name}
    return graph


def layer_of(module: str, layers: Mapping[str, tuple[str, ...]] = LAYERS) -> str | None:
    """The layer whose longest rule matches ``module``; None when no rule does."""
    best, length = None, -1
    for layer, rules in layers.items():
        for rule in rules:
            package = rule.removesuffix(".*")
            matches = module == rule or (
                rule.endswith(".*") and (module == package or module.startswith(package + "."))
            )
            if matches and len(rule) > length:
                best, length = layer, len(rule)
    return best


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles: every strongly connected group of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: Mapping[str, set[str]], layers: Mapping[str, tuple[str, ...]] = LAYERS) -> list[str]:
    """Each import of a module in a higher layer, as "a (layer) imports b (layer)"."""
    order = list(layers)
    found = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module, layers)
        for target in sorted(targets):
            there = layer_of(target, layers)
            if here and there and order.index(there) > order.index(here):
                found.append(f"{module} ({here}) imports {target} ({there})")
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return imports(modules())


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in modules() if layer_of(m) is None]
    assert unplaced == [], f"place these modules in a layer in tests/test_layers.py: {unplaced}"


def test_no_module_level_import_cycle(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_no_module_imports_a_layer_above_its_own(graph: dict[str, set[str]]) -> None:
    assert upward(graph) == []


def test_the_checks_find_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The checks themselves: a small made-up project with one cycle and one upward import."""
    pkg = tmp_path / "plend"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "robot.py").write_text("import os\nfrom plend.loop import ControlLoop\n")
    (pkg / "loop.py").write_text(
        "from plend import robot\ntry:\n    import plend.main\nexcept ImportError:\n    pass\n"
    )
    (pkg / "main.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from plend import robot\n"
    )
    (pkg / "safety.py").write_text("def f():\n    import plend.main\n")  # inside a function: not checked
    found = {k: v for k, v in modules(tmp_path).items() if k.startswith("plend")}
    graph = imports(found)
    assert graph == {
        "plend": set(),
        "plend.robot": {"plend.loop"},
        "plend.loop": {"plend.robot", "plend.main"},
        "plend.main": set(),
        "plend.safety": set(),
    }
    assert cycles(graph) == [["plend.loop", "plend.robot"]]
    # The longest rule places a module: plend.robot is core although "plend.*" is tools.
    layers = {
        "core": ("plend", "plend.robot"),
        "control": ("plend.loop", "plend.safety"),
        "tools": ("plend.*",),
    }
    assert upward(graph, layers) == [
        "plend.loop (control) imports plend.main (tools)",
        "plend.robot (core) imports plend.loop (control)",
    ]
