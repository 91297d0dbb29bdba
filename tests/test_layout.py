"""The package's layout rules (docs/architecture.md), checked on the source: no module imports
another module's underscore names, there is no import cycle between partax modules at import
time, no public function shares its name with a module of the package, and no library module
(outside ``partax.cli`` and ``partax.bench.__main__``) prints or parses arguments."""

from __future__ import annotations

import ast
import pathlib

import partax

ROOT = pathlib.Path(partax.__file__).parent


def _modules() -> dict:
    """Dotted name -> parsed AST of every module of the package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(path.read_text(), str(path))
    return out


MODULES = _modules()


def _top_level_imports(tree) -> list:
    """``(module, names)`` of the imports that run at import time (module level, not in functions)."""
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, [a.name for a in child.names]))
            elif isinstance(child, ast.Import):
                found.extend((a.name, []) for a in child.names)
            visit(child)

    visit(tree)
    return found


def _all_imports(tree) -> list:
    return [(n.module, [a.name for a in n.names]) for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0]


def test_the_walk_sees_the_package():
    """The checks below would pass vacuously on an empty walk."""
    assert {"partax", "partax.engine", "partax.coding", "partax.geometry.enumerate", "partax.cli"} <= set(MODULES)


def test_no_module_imports_another_modules_underscore_names():
    bad = []
    for name, tree in MODULES.items():
        for module, names in _all_imports(tree):
            if not module.startswith("partax") or module == name:
                continue
            bad += [f"{name}: from {module} import {n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
            if any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                bad.append(f"{name}: imports the private module {module}")
    assert not bad, bad


def test_no_import_cycle_at_import_time():
    graph = {}
    for name, tree in MODULES.items():
        deps = set()
        for module, names in _top_level_imports(tree):
            if not module.startswith("partax"):
                continue
            for n in names or [None]:
                sub = f"{module}.{n}" if n else None
                deps.add(sub if sub in MODULES else module)
        graph[name] = {d for d in deps if d in MODULES and d != name}

    # a package imports its submodules by design (its __init__ re-exports them); the cycles that
    # bite are between modules, so the edge from a module to its own parent package is dropped
    for name in graph:
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".")}
    state, cycles = {}, []

    def dfs(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                dfs(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    assert not cycles, cycles


def test_no_public_function_is_named_after_a_module():
    public = {n for n in partax.__all__ if callable(getattr(partax, n)) and not isinstance(getattr(partax, n), type)}
    modules = {name.rsplit(".", 1)[-1] for name in MODULES if name.count(".") == 1}
    assert not public & modules, sorted(public & modules)


def test_no_library_module_prints_or_parses_arguments():
    bad = []
    for name, tree in MODULES.items():
        if name.startswith("partax.cli") or name == "partax.bench.__main__":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                bad.append(f"{name}: print() at line {node.lineno}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                if "argparse" in mods:
                    bad.append(f"{name}: imports argparse")
    assert not bad, bad
