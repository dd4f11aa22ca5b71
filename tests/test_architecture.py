"""The package's layers, read from its source: no import cycle, no private name taken from another module, no
lower layer importing a higher one, no module over 400 lines (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hcvdyn"
LAYERS = {"files": 0, "version": 0, "cache": 0, "model": 1, "solve": 2, "estimate": 3, "analysis": 4, "results": 5, "cli": 6}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("hcvdyn", *parts)).removesuffix(".__init__")


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else max(LAYERS.values()) + 1  # hcvdyn/__init__ re-exports everything


def imports(path: Path):
    """(imported module, imported names, line) for every import of hcvdyn code, function-level ones included."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "hcvdyn" or mod.startswith("hcvdyn."):
                names = [a.name for a in node.names]
                submodules = [f"{mod}.{n}" for n in names if (SRC / Path(*f"{mod}.{n}".split(".")[1:])).with_suffix(".py").exists()
                              or (SRC / Path(*f"{mod}.{n}".split(".")[1:])).is_dir()]
                yield (mod, [n for n in names if f"{mod}.{n}" not in submodules], node.lineno)
                for s in submodules:
                    yield (s, [], node.lineno)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("hcvdyn"):
                    yield (a.name, [], node.lineno)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
GRAPH = {m: [(dep, names, line) for dep, names, line in imports(p)] for m, p in MODULES.items()}


def test_the_walk_sees_every_module_and_its_imports():
    assert {"hcvdyn.model.hcv", "hcvdyn.estimate.fit", "hcvdyn.analysis.virtual_trial", "hcvdyn.cli"} <= set(MODULES)
    assert any(dep == "hcvdyn.model.hcv" for dep, _, _ in GRAPH["hcvdyn.solve.adaptive"])


def test_no_lower_layer_imports_a_higher_one():
    bad = [f"{m}:{line} imports {dep}" for m, deps in GRAPH.items() for dep, _, line in deps
           if dep in MODULES and m != "hcvdyn" and layer(dep) > layer(m)]
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = [f"{m}:{line} imports {dep}.{n}" for m, deps in GRAPH.items() for dep, names, line in deps for n in names
           if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    edges = {m: sorted({dep for dep, _, _ in deps if dep in MODULES and dep != m and m != "hcvdyn"}) for m, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in edges[m]:
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [m])


def test_no_module_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_architecture_page_names_every_module_and_no_other():
    import re

    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_]+)\.py`", page))
    files = {p.stem for p in SRC.rglob("*.py") if p.stem != "__init__"}
    files |= {"__init__"} if "`__init__.py`" in page else set()
    assert named - files - {"__init__"} == set(), f"docs/architecture.md names modules that do not exist: {named - files}"
    plots = {f for f in files if f.startswith("plots_")}  # covered by `plots*.py`
    assert files - named - plots - {"__init__"} == set(), f"modules missing from docs/architecture.md: {files - named - plots}"


def test_module_paths_from_before_the_layered_layout_still_import():
    """Scripts written against the flat layout (the deSolve peer's make_inputs.py, for one) keep working."""
    import hcvdyn.pk
    from hcvdyn.dosing import dose_arrays
    from hcvdyn.model import dosing, pk
    from hcvdyn.solve import SolverOptions, simulate_batch

    assert dose_arrays is dosing.dose_arrays and hcvdyn.pk is pk
    assert simulate_batch is hcvdyn.simulate_batch and SolverOptions is hcvdyn.SolverOptions
    with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
        hcvdyn.no_such_module  # noqa: B018
