"""Imports go one way (inference ← trainer, inference ← bot; inside bot, packages by role, layered), and the web
and CPU hosts never load torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"inference": {"bot", "trainer"}, "trainer": {"bot"}, "bot": {"trainer"}}
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package):
    offenders = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
                 for path in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_web_and_cpu_host_modules_do_not_import_torch():
    code = ("import sys, bot.cli.main, bot.web.app, bot.worker.jobs, bot.lifecycle.retrain, bot.demo.hosts, "
            "bot.store.schema; from bot.cli.main import main; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- inside bot/: no cycles, layers as contracts ---------------------------------------------------

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str = "bot") -> dict[str, set[str]]:
    """Module -> the package's modules it imports, counting imports inside functions (they are dependencies too)."""
    paths = {module_name(p): p for p in (ROOT / package).rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in paths.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {known(alias.name) for alias in node.names if alias.name.startswith(package + ".")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base == package or base.startswith(package + "."):
                    # `from bot.x import y` imports bot.x.y when that is a module, else bot.x
                    found |= {known(f"{base}.{alias.name}") if f"{base}.{alias.name}" in paths else known(base)
                              for alias in node.names}
        graph[name] = found - {None, name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_ring():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_bot_counting_imports_inside_functions():
    graph = import_graph()
    assert "bot.lifecycle.retrain" in graph and "bot.lifecycle.gate" in graph["bot.lifecycle.retrain"]
    assert cycles(graph) == []


def test_bot_is_packages_by_role_with_small_modules():
    top = sorted(p.name for p in (ROOT / "bot").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    lines = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for top_dir in ("bot", "inference", "trainer", "tests", "bench") for p in (ROOT / top_dir).rglob("*.py")}
    assert len(lines) > 200 and {path: n for path, n in lines.items() if n > MAX_LINES} == {}
    for init in (ROOT / "bot").rglob("__init__.py"):
        if "migrations" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(ROOT)} says in one line what its package holds"


def test_the_demos_find_their_configs_from_their_new_home():
    """The demos read their default configs from the inference package, wherever their own module lives."""
    from bot.demo.hosts import HOSTS_CONFIG
    from bot.demo.pipeline import DEMO_CONFIG

    assert DEMO_CONFIG.is_file() and HOSTS_CONFIG.is_file()


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "import-linter is installed by `make test` (the test extra)"
    return subprocess.run([command, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_layers_in_pyproject_hold():
    out = lint_imports()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 7 kept, 0 broken." in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The same checker, given layers upside down, fails: it reads the real imports."""
    config = tmp_path / "upside_down.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["bot"]\n\n[[tool.importlinter.contracts]]\n'
                      'name = "upside down"\ntype = "layers"\nlayers = ["bot.store", "bot.lifecycle"]\n')
    out = lint_imports("--config", str(config))
    assert out.returncode != 0 and "bot.lifecycle" in out.stdout and "BROKEN" in out.stdout.upper()
