"""The tree shows the architecture: layering without cycles, __all__ everywhere, no dangling citations."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dualoptim"
MODULES = sorted(p for p in SRC.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every dualoptim module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "dualoptim" or m.startswith("dualoptim.")}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    return parts[1] if parts[1] in ("optim", "vision", "llm", "safety", "diffusion", "cli") else "core"


#: which layers each layer may import: optimizers < core < tasks < cli
ALLOWED = {
    "optim": {"optim"},
    "core": {"optim", "core"},
    "vision": {"optim", "core", "vision"},
    "llm": {"optim", "core", "llm"},
    # the safety task is an LLM task: it reuses the LLM losses, Trainer, models and formats
    "safety": {"optim", "core", "llm", "safety"},
    "diffusion": {"optim", "core", "diffusion"},
    "cli": {"optim", "core", "vision", "llm", "safety", "diffusion", "cli"},
}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_each_module_imports_only_layers_below_it(path):
    layer = _layer(_name(path))
    for module in _imports(path):
        assert _layer(module) in ALLOWED[layer], f"{_name(path)} ({layer}) imports {module}"


def test_the_optimizers_import_nothing_but_torch():
    for path in (SRC / "optim").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in {"torch", "dualoptim", "__future__", "math", "itertools", "collections", "contextlib",
                               "functools", "typing", "enum", "dataclasses", "warnings",
                               # _cpu.py builds and loads the compiled kernels (all standard library)
                               "ctypes", "hashlib", "logging", "os", "pathlib", "shutil", "subprocess",
                               "tempfile", "platform"}, f"{path.name}: {name}"


def test_no_import_cycles():
    graph = {_name(p): {m for m in _imports(p) if m != _name(p)} for p in MODULES}
    # a package's own __init__ re-exporting its modules is not a cycle of the design
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if state.get(nxt) is None:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in graph:
        if state.get(module) is None:
            visit(module, [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_every_module_has_a_docstring_and_all(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{_name(path)} has no module docstring"
    if path.name.startswith("_") and path.name != "__init__.py":
        return  # private modules
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
               or isinstance(n, ast.AnnAssign) and getattr(n.target, "id", None) == "__all__"
               for n in tree.body), f"{_name(path)} defines no __all__"


def test_no_citation_of_documents_outside_the_repository_and_no_test_runner_sniffing():
    design = (SRC.parents[1] / "docs" / "design.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#+\s*§?(\d+(?:\.\d+)*)", design, flags=re.M))
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bSPEC\b", text), f"{_name(path)} cites SPEC, which is not in this repository"
        assert "pytest" not in text, f"{_name(path)} looks for the test runner"
        for cited in re.findall(r"docs/design\.md`{0,2} §(\d+(?:\.\d+)*)", text):
            assert cited in sections, f"{_name(path)} cites docs/design.md §{cited}, which does not exist"
