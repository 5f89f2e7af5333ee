"""The package's shape: import graph (no cycles, dependencies point down), module size, no copied blocks.

Every module under ``src/spidrkit`` is parsed with :mod:`ast` (nothing is imported). An import is an arrow
from the importing module to the module it names, wherever the statement is (module level, inside a
function, under ``if TYPE_CHECKING``): ``import a.b``, ``from a.b import c`` (an arrow to ``a.b``, and to
``a.b.c`` when that is a module), relative imports resolved against the importing module's package, and
``importlib.import_module("a.b")`` with a literal string. Importing a package (``from spidrkit.x import y``
inside ``spidrkit/x/z.py``) is an arrow to the package module ``spidrkit.x`` (its ``__init__``). The lazy
name maps (``_LAZY``) of ``spidrkit/__init__.py`` and ``spidrkit/evaluation/__init__.py`` are plain data and
are not arrows. The rules are those of ``docs/design.md``.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "spidrkit"
MAX_FUNCTION_LINES = 60  # a function reads on one screen; longer ones hide steps that deserve a name
WINDOW = 6

# (importer prefix, forbidden target prefixes)
FORBIDDEN = {
    "spidrkit.models": (
        "spidrkit.data", "spidrkit.training", "spidrkit.extraction", "spidrkit.evaluation", "spidrkit.cli",
        "spidrkit.checkpoints",
    ),
    "spidrkit.extraction": ("spidrkit.training",),
    "spidrkit.evaluation": ("spidrkit.training",),
}


# ----------------------------------------------------------------------------------------------- the walker
def module_name(path: Path, root: Path = SRC) -> tuple[str, bool]:
    """(dotted name, is_package) of a source file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package):
        raise ImportError(f"relative import beyond the top package in {module}")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """Every (imported dotted name, line) of ``source``; ``from a import b`` gives ``a`` and ``a.b``
    (the caller keeps the names that are modules)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and _literal_first_arg(node):
            found.append((node.args[0].value, node.lineno))
    return found


def _literal_first_arg(call: ast.Call) -> bool:
    return bool(call.args) and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module" and isinstance(func.value, ast.Name) and func.value.id == "importlib"
    return isinstance(func, ast.Name) and func.id == "import_module"


def build_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, dict[str, int]]:
    """Arrows between the given modules: {importer: {imported: first line}}. ``modules`` maps a dotted
    name to (source, is_package). Names that are not modules of the set (``from a import function``,
    third-party packages) are dropped; a dotted name resolves to its longest prefix that is a module of
    the set only when it is inside our package (``spidrkit.x.func`` -> ``spidrkit.x``)."""
    graph: dict[str, dict[str, int]] = {}
    for name, (source, is_package) in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(source, name, is_package):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle path (first node repeated at the end) per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; graphs here are small, recursion depth is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, {}):
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_path(graph, comp) for comp in components]


def _cycle_path(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first node (breadth-first inside the component)."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in members and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # unreachable for a component with a cycle


def forbidden_arrows(graph: dict[str, dict[str, int]], rules: dict[str, tuple[str, ...]]) -> list[str]:
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    bad = []
    for src, edges in sorted(graph.items()):
        for prefix, targets in rules.items():
            if under(src, prefix):
                bad += [f"{src} -> {dst} (line {line})" for dst, line in sorted(edges.items())
                        if any(under(dst, t) for t in targets)]
    return bad


# Lines that carry no logic of their own: skipped before looking for repeated blocks.
_TRIVIAL = re.compile(r"^(?:[\s()\[\]{},:;.]*|else:|try:|finally:|pass|return|continue|break)$")


def normalised_lines(source: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that count for duplication: not blank, not a comment,
    not punctuation only or a bare keyword (``)``, ``else:``, ``return``), not part of an import."""
    import_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            import_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    out = []
    for i, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or i in import_lines or _TRIVIAL.match(line):
            continue
        out.append((i, line))
    return out


def duplicate_blocks(files: dict[str, str], window: int = WINDOW) -> list[tuple[str, int, str, int]]:
    """(file, line, other file, other line) for every block of ``window`` normalised lines found twice;
    a repeated run longer than ``window`` is reported once, at its first line."""
    seen: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
    lines = {name: normalised_lines(src) for name, src in files.items()}
    for name, norm in lines.items():
        for k in range(len(norm) - window + 1):
            key = hashlib.sha1("\n".join(t for _, t in norm[k : k + window]).encode()).digest()
            seen[key].append((name, k))
    pairs = set()
    for places in seen.values():
        for a in range(len(places)):
            for b in range(a + 1, len(places)):
                (fa, ka), (fb, kb) = places[a], places[b]
                if fa == fb and abs(ka - kb) < window:
                    continue  # a run of identical lines overlapping itself
                pairs.add((fa, ka, fb, kb))
    starts = [p for p in pairs if (p[0], p[1] - 1, p[2], p[3] - 1) not in pairs]
    return sorted((fa, lines[fa][ka][0], fb, lines[fb][kb][0]) for fa, ka, fb, kb in starts)


# ----------------------------------------------------------------------------------------------- the package
def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _package_graph() -> dict[str, dict[str, int]]:
    modules = {}
    for path, text in _sources().items():
        name, is_package = module_name(path)
        modules[name] = (text, is_package)
    return build_graph(modules)


def test_no_import_cycles():
    cycles = find_cycles(_package_graph())
    assert not cycles, "import cycles (function-level imports included):\n" + "\n".join(
        "  " + " -> ".join(c) for c in cycles
    )


def test_models_import_nothing_above_them():
    bad = forbidden_arrows(_package_graph(), {"spidrkit.models": FORBIDDEN["spidrkit.models"]})
    assert not bad, "spidrkit.models must not import data/training/extraction/evaluation/cli/checkpoints:\n" + (
        "\n".join("  " + b for b in bad)
    )


def test_extraction_and_evaluation_do_not_import_training():
    rules = {k: v for k, v in FORBIDDEN.items() if k != "spidrkit.models"}
    bad = forbidden_arrows(_package_graph(), rules)
    assert not bad, "spidrkit.extraction / spidrkit.evaluation must not import spidrkit.training:\n" + (
        "\n".join("  " + b for b in bad)
    )


# the layers of docs/design.md: what each package may import (the package itself, ``spidrkit`` for
# ``__version__``, ``spidrkit.errors``, ``spidrkit.lazy`` and ``spidrkit.text_in`` are always allowed); demo and
# cli sit on top and may import anything. ``retry`` (backoff) and ``hub`` (the Hugging Face Hub) are base modules
# like ``io``.
LAYERS = {
    "errors": set(),
    "lazy": set(),
    "text_in": set(),
    "progress": set(),
    "tracking": set(),
    "config": set(),
    "io": set(),
    "runtime": set(),
    "retry": set(),
    "hub": {"retry"},
    "models": {"config"},
    "encoders": {"models", "config", "io", "runtime", "hub", "retry"},
    "checkpoints": {"encoders", "models", "config", "io", "runtime", "hub", "retry"},
    "data": {"models", "config", "io", "runtime", "hub", "retry"},
    "extraction": {"checkpoints", "encoders", "data", "models", "config", "io", "runtime", "hub", "retry"},
    "lm": {"extraction", "checkpoints", "encoders", "data", "models", "config", "io", "runtime", "hub", "retry"},
    "evaluation": {"lm", "extraction", "checkpoints", "encoders", "data", "models", "config", "io", "runtime", "hub",
                   "retry"},
    "training": {"checkpoints", "data", "models", "config", "io", "runtime", "hub", "retry"},
}
# leaves: they import nothing of spidrkit but errors
ALWAYS_ALLOWED = ("errors", "lazy", "text_in", "progress", "tracking")


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """Arrows between top-level parts of the package that the layers do not allow."""
    def part(module: str) -> str:
        return module.split(".")[1] if "." in module else ""

    bad = []
    for importer, targets in graph.items():
        allowed = LAYERS.get(part(importer))
        if allowed is None:
            continue
        for target, line in targets.items():
            if part(target) not in {part(importer), "", *ALWAYS_ALLOWED, *allowed}:
                bad.append(f"{importer} -> {target} (line {line})")
    return sorted(bad)


def test_packages_import_only_the_layers_below_them():
    bad = layer_violations(_package_graph())
    assert not bad, "imports against the layers of docs/design.md:\n" + "\n".join("  " + b for b in bad)


def test_spidrkit_never_imports_the_reference_release():
    """The authors' package (``spidr``) is a test oracle only (tests/oracle.py)."""
    bad = [f"{module_name(path)[0]}:{line}" for path, text in _sources().items()
           for name, line in imports_of(text, module_name(path)[0], module_name(path)[1])
           if name == "spidr" or name.startswith("spidr.")]
    assert not bad, "spidrkit imports the reference release: " + ", ".join(bad)


def test_layer_rule_flags_an_arrow_upwards():
    g = build_graph({"spidrkit.data.a": ("from spidrkit.training import b", False), "spidrkit.training": ("", True),
                     "spidrkit.training.b": ("from spidrkit.data import a", False)})
    assert layer_violations(g) == ["spidrkit.data.a -> spidrkit.training (line 1)",
                                   "spidrkit.data.a -> spidrkit.training.b (line 1)"]


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """``(name, first line, lines)`` of every function (methods and nested ones included) longer than ``limit``
    lines, decorators and docstring counted; the argument tables of the CLI (``add_arguments`` and the
    ``add_*`` / ``_add_*`` builders of a parser, one ``add_argument`` per option) are exempt."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_argument_table(node):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if (n := node.end_lineno - first + 1) > limit:
                out.append((node.name, first, n))
    return out


def _is_argument_table(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    calls = [c for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)]
    table = sum(c.func.attr in ("add_argument", "add_parser", "add_argument_group") for c in calls)
    return node.name.lstrip("_").startswith("add_") and table >= len(calls) / 2


def test_functions_are_at_most_60_lines():
    """The module cap became this function cap (docs/design.md, "Size rules"); the parameter count
    (PLR0913, 8), statements (PLR0915, 50) and branches (C901, 15) are ruff's, in pyproject.toml."""
    over = [f"{p.relative_to(SRC).as_posix()}:{line} {name}: {n} lines" for p, t in _sources().items()
            for name, line, n in long_functions(t)]
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join("  " + o for o in over)


def test_long_function_finder_counts_decorators_and_exempts_argument_tables():
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    src = f"@dec\ndef f():\n{body}\ndef g():\n{body}"
    assert long_functions(src) == [("f", 1, 61)]  # decorator + def + 59 lines; g: 60 lines, allowed
    table = "".join(f"    p.add_argument('--o{i}')\n" for i in range(70))
    assert long_functions(f"def add_arguments(p):\n{table}") == []
    assert long_functions(f"def build(p):\n{table}") == [("build", 1, 71)]


def test_no_block_of_six_lines_repeated():
    files = {p.relative_to(SRC).as_posix(): t for p, t in _sources().items()}
    dups = duplicate_blocks(files)
    assert not dups, f"blocks of {WINDOW}+ lines repeated in src/ (first line of each copy):\n" + "\n".join(
        f"  {a}:{la}  ==  {b}:{lb}" for a, la, b, lb in dups
    )


def imported_test_modules(source: str) -> set[str]:
    """The ``test_*`` modules that ``source`` imports (absolute imports, anywhere in it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {n for n in names if n.split(".")[0].startswith("test_")}


def test_no_test_module_imports_another():
    """Shared fixtures live in tests/conftest.py, shared helpers in tests/support.py (or oracle.py)."""
    tests = Path(__file__).resolve().parent
    found = {p.name: sorted(imported_test_modules(p.read_text())) for p in sorted(tests.glob("*.py"))}
    assert {name: mods for name, mods in found.items() if mods} == {}
    assert imported_test_modules("import test_training\nfrom test_sweep import corpus\nfrom support import MICRO\n"
                                 "def f():\n    import test_abx.x\n") == {"test_training", "test_sweep", "test_abx.x"}


# ----------------------------------------------------------------------------------------------- the walker's own tests
def _graph(**modules: str) -> dict[str, dict[str, int]]:
    """Synthetic package: keyword ``pkg__sub`` is module ``pkg.sub``; ``pkg__sub___init`` a package."""
    out = {}
    for key, src in modules.items():
        is_package = key.endswith("___init")
        name = key.removesuffix("___init").replace("__", ".")
        out[name] = (src, is_package)
    return build_graph(out)


def test_walker_finds_a_cycle_through_a_function_level_import():
    g = _graph(
        p___init="",
        p__a="from p.b import f\n",
        p__b="def f():\n    from p import c\n    return c\n",
        p__c="import p.a\n",
    )
    assert g["p.b"] == {"p": 2, "p.c": 2}
    assert find_cycles(g) == [["p.a", "p.b", "p.c", "p.a"]]


def test_walker_counts_a_package_init_as_a_module():
    g = _graph(p___init="", p__x___init="from p.x.y import Y\n", p__x__y="from p.x import helper\n")
    assert g["p.x.y"] == {"p.x": 1}
    assert find_cycles(g) == [["p.x", "p.x.y", "p.x"]]


def test_walker_resolves_relative_and_importlib_imports():
    src = "from . import b\nfrom ..q import r\nfrom .c import thing\nimport importlib\nimportlib.import_module('p.d')\n"
    assert imports_of(src, "p.sub.a") == [
        ("p.sub", 1), ("p.sub.b", 1), ("p.q", 2), ("p.q.r", 2), ("p.sub.c", 3), ("p.sub.c.thing", 3),
        ("importlib", 4), ("p.d", 5),
    ]
    assert imports_of("from . import m\n", "p.sub", is_package=True) == [("p.sub", 1), ("p.sub.m", 1)]
    g = _graph(p___init="", p__d="", p__q="", p__sub___init="", p__sub__b="", p__sub__a=src)
    assert g["p.sub.a"] == {"p.sub": 1, "p.sub.b": 1, "p.q": 2, "p.d": 5}
    assert find_cycles(g) == []


def test_walker_applies_the_direction_rules():
    g = _graph(
        spidrkit__models__m="def f():\n    import spidrkit.data.audio\n",
        spidrkit__data__audio="",
        spidrkit__evaluation__e="from spidrkit.models import m\n",
        spidrkit__models___init="",
    )
    assert forbidden_arrows(g, FORBIDDEN) == ["spidrkit.models.m -> spidrkit.data.audio (line 2)"]


def test_duplicate_finder_reports_copies_and_ignores_trivia():
    body = "".join(f"    v{i} = compute({i}, x)\n" for i in range(6))
    a = f"import os\n\ndef f(x):\n{body}    return v5\n"
    b = f"# a comment\ndef g(x):\n\n{body}\n    # note\n    return (\n        v5\n    )\n"
    assert duplicate_blocks({"a.py": a, "b.py": b}) == [("a.py", 4, "b.py", 4)]
    # five equal lines, or six lines of which one differs, are not a copy
    shorter = body.replace("    v5 = compute(5, x)\n", "")
    changed = body.replace("compute(3", "other(3")
    assert duplicate_blocks({"a.py": a, "c.py": f"def h(x):\n{shorter}", "d.py": f"def k(x):\n{changed}"}) == []
    # imports, comments, blank and punctuation-only lines do not make a block
    trivia = "from a import (\n    b,\n    c,\n)\n# x\n\ntry:\n    pass\nfinally:\n    pass\n"
    assert normalised_lines(trivia) == []
    assert duplicate_blocks({"e.py": trivia * 3, "f.py": trivia}) == []


@pytest.mark.parametrize(("path", "expected"), [
    ("spidrkit/__init__.py", ("spidrkit", True)),
    ("spidrkit/models/spidr.py", ("spidrkit.models.spidr", False)),
])
def test_module_names(path, expected):
    assert module_name(SRC / path) == expected
