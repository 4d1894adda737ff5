"""The packages form layers: no import cycle between them (imports inside functions count too), the
components import nothing of the CLI, and importing the project changes nothing in the process environment."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = sorted(d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, "__init__.py")) and d != "tests")
MODULES = sorted(f[:-3] for f in os.listdir(ROOT) if f.endswith(".py"))  # main, parameters, Result_Evaluations
NODES = PACKAGES + MODULES


def imported_names(path: str):
    """Top-level project names imported anywhere in the file (module level or inside functions)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def files_of(node: str):
    if node in MODULES:
        yield os.path.join(ROOT, node + ".py")
        return
    for folder, _, names in os.walk(os.path.join(ROOT, node)):
        yield from (os.path.join(folder, n) for n in names if n.endswith(".py"))


def dependency_graph() -> dict:
    return {node: {name for path in files_of(node) for name in imported_names(path) if name in NODES and name != node}
            for node in NODES}


def find_cycle(graph: dict):
    """A list of nodes forming a cycle, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_between_packages():
    graph = dependency_graph()
    assert {"criteria", "batchminer", "utilities", "evaluation", "metrics", "main", "parameters"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


@pytest.mark.parametrize("package", ["criteria", "batchminer", "architectures", "metrics", "utilities"])
def test_components_import_nothing_of_the_cli(package):
    assert not dependency_graph()[package] & {"main", "parameters", "Result_Evaluations", "evaluation"}


def test_miners_do_not_import_losses():
    assert "criteria" not in dependency_graph()["batchminer"]


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_importing_the_project_leaves_the_environment_alone():
    """Libraries may set variables when imported (scikit-learn sets KMP_*): they are imported first, then the
    project, whose own imports must not change os.environ (timm's module once set HF_HUB_OFFLINE)."""
    project = NODES + ["tests"]
    libraries = run_python(
        "import sys, main, architectures.timm_models\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules if not m.startswith('_')}} - set({project}))))")
    run_python(f"import os, importlib\nfor name in {libraries.split()}:\n    importlib.import_module(name)\n"
               "before = dict(os.environ)\nimport main, architectures.timm_models\n"
               "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
