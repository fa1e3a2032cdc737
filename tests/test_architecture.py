"""The package's shape (docs/architecture.md): commands on top, the library below in folders that import
only from folders below their own; no import cycles, entry points that depend on the library and never on
each other, no imports hidden in functions to dodge a cycle, no module that only re-exports another, and
folders and modules a reader can hold in mind."""

import ast
import os
import subprocess
import sys

import pytest

from coqui_stt_training.system.worker_pool import cpu_count
from tests.helpers import ROOT

PACKAGE = os.path.join(ROOT, "coqui_stt_training")
# `python -m coqui_stt_training.<name>`: Coqui's entry points and ours
ENTRY_POINTS = {"train", "evaluate", "export", "transcribe", "lm_optimize", "training_graph_inference", "generate_lm",
                "generate_scorer_package", "convert", "inference", "import_cv", "data_set_tool", "play",
                "combine"}  # fmt: skip
# The library's folders, top to bottom along the data's path. A folder imports only from folders in rows
# below its own: never from a row above, nor from the other folder of its own row.
LAYERS = [{"flags"}, {"training"}, {"decoding"}, {"feeding", "exports"}, {"data", "checkpoints"}, {"model", "formats"},
          {"system"}]  # fmt: skip
FOLDERS = set().union(*LAYERS)
COQUI_PATHS = {"util", "client"}  # paths users port to: util.config, util.downloader (notebooks); client (stt)
MAX_MODULES_PER_FOLDER = 12
# imports inside functions are for optional extras only, so that the package works without them
OPTIONAL = {"onnx", "onnxruntime", "kenlm", "optuna", "av", "ai_edge_litert"}
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


def layer(folder: str) -> int:
    return next(i for i, row in enumerate(LAYERS) if folder in row)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a library module that breaks the folder order (commands and util/ import freely)."""
    problems = []
    for name, targets in sorted(graph.items()):
        folder = name.split(".")[0]
        if folder not in FOLDERS:
            continue
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != folder and (other not in FOLDERS or layer(other) <= layer(folder)):
                problems.append(f"{name} imports {target}")
    return problems


def test_the_top_level_holds_only_commands_util_and_the_library_folders():
    top = {name for name in MODULES if name and "." not in name}
    expected = ENTRY_POINTS | COQUI_PATHS | FOLDERS
    assert top == expected, (
        f"not a command, util/ or a library folder: {sorted(top - expected)}; missing: {sorted(expected - top)}"
    )


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_command_runs_as_a_module(name):
    tree = parse(name)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{name} has no main()"
    runs = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'"]
    assert runs, f"python -m coqui_stt_training.{name} would do nothing"


def test_each_folder_imports_only_folders_below_it():
    assert upward_imports(GRAPH) == []


def test_the_folder_rule_catches_an_import_up_or_across():
    assert upward_imports({"model.features": {"flags.config"}}) == ["model.features imports flags.config"]
    assert upward_imports({"feeding.batches": {"exports.directory"}}) == ["feeding.batches imports exports.directory"]
    assert upward_imports({"system.log": {"train"}}) == ["system.log imports train"]
    assert upward_imports({"flags.config": {"flags.options", "system.log"}, "train": {"flags.config"}}) == []


@pytest.mark.parametrize("folder", sorted(FOLDERS | COQUI_PATHS))
def test_folders_stay_small_and_their_init_only_describes_them(folder):
    members = [name for name in MODULES if name.startswith(folder + ".")]
    assert len(members) <= MAX_MODULES_PER_FOLDER, f"{folder}/ holds {len(members)} modules: cut it by concern"
    init = parse(folder)
    assert ast.get_docstring(init), f"{folder}/__init__.py should say in one line what the folder holds"
    if folder == "client":  # the API `stt` apps import is its __init__ (stt's own is), so the path is the same
        return
    assert len(init.body) == 1, f"{folder}/__init__.py should hold only its docstring, not re-export names"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_only_re_exports_another(name):
    body = [n for n in parse(name).body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    dunder_all = lambda n: isinstance(n, ast.Assign) and [ast.unparse(t) for t in n.targets] == ["__all__"]
    assert not body or not all(isinstance(n, (ast.Import, ast.ImportFrom)) or dunder_all(n) for n in body), (
        f"{name} only re-exports: import from the module that defines the names"
    )


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
