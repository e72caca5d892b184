"""Issue 15: the package's layout holds: no import cycles, no layer imports the one above it.

Read from the source (AST), not by importing: every ``import`` statement at module level counts
for cycles (imports inside functions are deliberate lazy imports, allowed to point sideways), and
every import anywhere counts for the layer order: engine ← presets ← workflows ← build ← cli, and
model_core never imports the build layer or the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aether_data", "model_core")
LAYERS = {  # a module may import its own layer and those below, never one above
    "aether_data.develop": 0,
    "aether_data.presets": 1,
    "aether_data.workflows": 2,
    "aether_data.build": 3,
    "aether_data.cli": 4,
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str], top_only: bool) -> set[str]:
    """Project modules ``name`` imports (``from a import b`` counts b when b is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _layer(module: str) -> int | None:
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def test_no_import_cycles_among_module_level_imports() -> None:
    mods = _modules()
    graph = {m: _imports(m, p, set(mods), top_only=True) for m, p in mods.items()}
    # a package's __init__ re-exporting its children is not a cycle with them
    graph = {
        m: {d for d in deps if not (m.startswith(d + ".") and (mods[d].name == "__init__.py"))}
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d] if d in stack else [m, d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles[:5]


def test_no_layer_imports_the_layer_above() -> None:
    mods = _modules()
    bad = []
    for m, p in mods.items():
        for d in _imports(m, p, set(mods), top_only=False):
            own, other = _layer(m), _layer(d)
            if own is not None and other is not None and other > own:
                bad.append(f"{m} → {d}")
            if m.startswith("model_core") and (other or 0) >= LAYERS["aether_data.build"]:
                bad.append(f"{m} → {d}")
    assert not bad, bad


MAX_FILE_LINES = 520  # "about 500"
MAX_FUNCTION_LINES = 85  # "about 80"


def test_files_and_functions_stay_readable() -> None:
    """No source file over about 500 lines; a function whose body runs over about 80 says in its
    docstring why it is better whole ("Kept whole")."""
    long_files, long_functions = [], []
    for path in _modules().values():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # the body: a CLI command's typed option list is a declaration, not logic
                n = (node.end_lineno or node.lineno) - node.body[0].lineno + 1
                if n > MAX_FUNCTION_LINES and "Kept whole" not in (ast.get_docstring(node) or ""):
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long_files, long_files
    assert not long_functions, long_functions
