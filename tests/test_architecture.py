"""The package's shape: no import cycles, entry points that depend on the library and never on each other,
no imports hidden in functions to dodge a cycle, and modules a reader can hold in mind."""

import ast
import os
import subprocess
import sys

import pytest

from coqui_stt_training.system.worker_pool import cpu_count
from tests.helpers import ROOT

PACKAGE = os.path.join(ROOT, "coqui_stt_training")
# `python -m coqui_stt_training.<name>`: Coqui's entry points and ours
ENTRY_POINTS = {"train", "evaluate", "export", "convert", "transcribe", "lm_optimize", "training_graph_inference",
                "inference", "import_cv", "data_set_tool"}  # fmt: skip
# imports inside functions are for optional extras only, so that the package works without them
OPTIONAL = {"onnx", "onnxruntime", "kenlm", "optuna", "av"}
MAX_LINES = 500


def modules() -> dict[str, str]:
    """Module name (relative to the package, e.g. "formats.tf_bundle") -> its path."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, name), PACKAGE)[:-3].replace(os.sep, ".")
                found[relative.removesuffix(".__init__").removesuffix("__init__")] = os.path.join(folder, name)
    return found


MODULES = modules()


def package_imports(name: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package modules an import statement of module `name` brings in."""
    if isinstance(node, ast.Import):
        targets = [a.name.removeprefix("coqui_stt_training.") for a in node.names if a.name.startswith("coqui_stt")]
    elif node.level:
        is_package = MODULES[name].endswith("__init__.py")
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - node.level + 1] if node.level > 1 else base
        stem = ".".join([*base, node.module] if node.module else base)
        targets = [stem] + [f"{stem}.{a.name}".lstrip(".") for a in node.names]
    elif node.module and node.module.startswith("coqui_stt_training"):
        stem = node.module.removeprefix("coqui_stt_training").lstrip(".")
        targets = [stem] + [f"{stem}.{a.name}".lstrip(".") for a in node.names]
    else:
        targets = []
    return {t for t in targets if t in MODULES and t != name}


def parse(name: str) -> ast.Module:
    with open(MODULES[name], encoding="utf-8") as f:
        return ast.parse(f.read())


GRAPH = {
    name: set().union(
        *(package_imports(name, n) for n in ast.walk(parse(name)) if isinstance(n, (ast.Import, ast.ImportFrom)))
    )
    for name in MODULES
}


def test_the_module_list_is_what_this_test_knows():
    assert set(MODULES) >= ENTRY_POINTS
    assert "formats.tf_bundle" in MODULES


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(GRAPH[name]):
            assert state.get(target) != "open", "import cycle: " + " -> ".join(path + [target])
            if target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_entry_points_depend_on_the_library_never_on_each_other():
    for name, targets in GRAPH.items():
        assert not targets & ENTRY_POINTS, f"{name} imports the entry point(s) {sorted(targets & ENTRY_POINTS)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_inside_functions_are_of_optional_extras_only(name):
    for function in ast.walk(parse(name)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {"coqui_stt_training"} if node.level else {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= OPTIONAL, f"{name}:{node.lineno} imports {sorted(roots)} inside {function.name}()"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    with open(MODULES[name], encoding="utf-8") as f:
        lines = f.read().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_thread_counts_follow_the_cgroup_quota_and_the_affinity(tmp_path):
    allowed = len(os.sched_getaffinity(0))
    assert cpu_count(str(tmp_path)) == allowed  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_count(str(tmp_path)) == allowed
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert cpu_count(str(tmp_path)) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_count(str(tmp_path)) == allowed
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1, one CPU
    assert cpu_count(str(tmp_path)) == 1


def test_openmp_threads_wait_passively_unless_the_user_chose():
    code = "import coqui_stt_training, os; print(os.environ['OMP_WAIT_POLICY'])"
    unset = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # (this process has it set)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=unset).stdout == "PASSIVE\n"
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout == "ACTIVE\n"
