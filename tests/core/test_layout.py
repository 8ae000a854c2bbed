"""The shape of the code: the static import graph has no cycle, imports flow one way along the data
flow (audio -> features -> data -> models -> training -> inference -> search -> app), and no module
grows past about 400 lines.

The graph is read from the source with :mod:`ast`, so it sees every import, including those inside
functions (a cycle hidden in a function is still a cycle: it only waits for the right call order).
``from spkid.pkg import Name`` is resolved through the package's lazy ``_LAZY`` map to the submodule
that defines ``Name``; the lazy maps themselves are not edges (nothing runs until a name is asked for).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("spkid", "spkid_torch", "spkid_keras")
MAX_LINES = 400

# Stage of each part of the core, in data-flow order; a module may import only from its own stage or an
# earlier one. Rank 0 is shared by every stage: errors, strict configs, file I/O, metrics, the backend
# boundary and the package facade (whose lazy map is not an edge).
STAGES = {
    "spkid": 0, "spkid.errors": 0, "spkid._strict": 0, "spkid._lazy": 0, "spkid.fileio": 0,
    "spkid.metrics": 0, "spkid.backends": 0,
    "spkid.audio": 1, "spkid.features": 2, "spkid.data": 3, "spkid.models": 3, "spkid.training": 4,
    "spkid.inference": 5, "spkid.search": 6, "spkid.app": 7, "spkid.__main__": 7,
    # The training recipe is declarative (it depends on the model specs only) and the data stage's
    # sampler reads its crop, batch and augmentation fields, so it sits with data and models.
    "spkid.training.config": 3,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            out[_module_name(path)] = path
    return out


SOURCES = _sources()


def _lazy_map(module: str) -> dict[str, str]:
    """A package's ``_LAZY`` name -> submodule map (relative names, as written)."""
    path = SOURCES.get(module)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            if isinstance(node.value, ast.Dict):
                return {ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(node.value.keys, node.value.values)
                        if k is not None and isinstance(v, ast.Constant)}
    return {}


def _resolve(importer: str, is_pkg: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = importer.split(".") if is_pkg else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _edges(name: str, path: Path) -> set[str]:
    is_pkg = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(name, is_pkg, node.level, node.module)
            lazy = _lazy_map(mod)
            for a in node.names:
                if f"{mod}.{a.name}" in SOURCES:  # a submodule
                    targets.add(f"{mod}.{a.name}")
                elif a.name in lazy:  # a lazily exported name: its defining module
                    targets.add(f"{mod}.{lazy[a.name]}")
                else:
                    targets.add(mod)
    return {t for t in targets if t in SOURCES and t != name}


GRAPH = {name: _edges(name, path) for name, path in SOURCES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _stage(module: str) -> int | None:
    best = None
    for prefix, rank in STAGES.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return None if best is None else best[1]


def test_the_graph_sees_the_packages():
    assert {"spkid.data.cache", "spkid.training.loop", "spkid.search.gallery", "spkid.app.cli"} <= set(GRAPH)
    assert "spkid.features.config" in GRAPH["spkid.data.cache"]  # a module-level import
    assert sum(len(v) for v in GRAPH.values()) > 100


def test_cycle_detection_finds_a_planted_cycle():
    planted = {**{k: set(v) for k, v in GRAPH.items()}}
    planted["spkid.errors"] = planted["spkid.errors"] | {"spkid.app.cli"}
    assert any("spkid.errors" in c and "spkid.app.cli" in c for c in _cycles(planted))


def test_no_import_cycle():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles (every import counts, also inside functions):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_every_core_module_belongs_to_a_stage():
    assert [m for m in GRAPH if m.startswith("spkid.") and _stage(m) is None] == []


def test_imports_follow_the_data_flow():
    """A core module imports only from its own stage or an earlier one (the application layer may use
    everything; nothing below it may import a command, the service or a plot)."""
    wrong = []
    for mod, targets in GRAPH.items():
        if not (mod == "spkid" or mod.startswith("spkid.")):
            continue
        for t in targets:
            if t.startswith("spkid.") and _stage(t) > _stage(mod):
                wrong.append(f"{mod} (stage {_stage(mod)}) imports {t} (stage {_stage(t)})")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_modules_stay_short(module):
    n = len(SOURCES[module].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{SOURCES[module].relative_to(REPO)} has {n} lines (> {MAX_LINES}): split it by job"


def test_core_packages_declare_their_public_names():
    """Each core package's lazy map names only modules that exist and names they define."""
    for pkg in [m for m, p in SOURCES.items() if m.startswith("spkid") and p.name == "__init__.py"]:
        for name, sub in _lazy_map(pkg).items():
            target = f"{pkg}.{sub}"
            assert target in SOURCES, f"{pkg}._LAZY[{name!r}] names a missing module {target}"
            tree = ast.parse(SOURCES[target].read_text(encoding="utf-8"))
            defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
            defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
            assert name in defined, f"{pkg}._LAZY[{name!r}] -> {target}, which does not define it"
