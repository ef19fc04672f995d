"""The public surface, and a command line that starts at once and keeps TensorFlow quiet."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tfinetune

PACKAGE = Path(tfinetune.__file__).parent
TF_LOG = ("I0000", "W0000", "E0000", "oneDNN", "cuInit", "cuda", "absl::InitializeLog")


def _run(*args, env_drop=("TF_CPP_MIN_LOG_LEVEL", "TFINETUNE_VERBOSE"), **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    command = [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)


def test_import_and_help_do_not_load_tensorflow():
    code = (
        "import sys, tfinetune, tfinetune.cli\n"
        "try:\n"
        "    tfinetune.cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tensorflow_hub', "
        "'tensorflow_datasets') if m in sys.modules))"
    )
    out = _run("-c", code, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: tfinetune" in out.stdout


def test_help_and_argument_errors_print_no_tensorflow_log():
    helped = _run("-m", "tfinetune.cli", "--help")
    assert helped.returncode == 0
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in helped.stdout
    wrong = _run("-m", "tfinetune.cli", "train", "--epochs", "many")
    assert wrong.returncode == 2 and "invalid whole number: 'many'" in wrong.stderr
    for out in (helped, wrong):
        assert not [line for line in out.stderr.splitlines() if any(t in line for t in TF_LOG)]


@pytest.mark.processes
def test_train_at_default_verbosity_prints_no_tensorflow_cxx_log(tmp_path):
    from tfinetune.data.synthetic import write_shapes_folder

    data = write_shapes_folder(tmp_path / "data", ["cross", "ring"], 4, size=16)
    args = ["-m", "tfinetune.cli", "train", "--data", str(data), "--out", str(tmp_path / "run")]
    args += ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "16"]
    quiet = _run(*args, "--epochs", "1", "--freeze-epochs", "0", "--batch-size", "8")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert (tmp_path / "run" / "model.keras").is_file()
    assert not [line for line in quiet.stderr.splitlines() if any(t in line for t in TF_LOG)]
    # --verbose brings TensorFlow's own start-up log back.
    loud = _run("-m", "tfinetune.cli", "--verbose", "predict", str(tmp_path / "run"), "nothing.png")
    assert any(t in loud.stderr for t in TF_LOG), loud.stderr[-2000:]


def test_every_public_name_comes_from_the_module_the_surface_names():
    assert len(tfinetune.__all__) == len(set(tfinetune.__all__))
    assert set(tfinetune.__all__) <= set(dir(tfinetune))
    for module, names in tfinetune._PUBLIC.items():
        imported = importlib.import_module(module)
        for name in names:
            value = getattr(tfinetune, name)
            assert value is getattr(imported, name), name
            if callable(value) and hasattr(value, "__module__"):
                assert value.__module__ == module, (name, value.__module__)


def test_the_tree_reads_as_the_flow_and_modules_stay_small():
    steps = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert steps == [
        "cleaning", "cli", "data", "evaluation", "models", "runs", "serving", "training"
    ]  # fmt: skip
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 400, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1
                assert lines <= 60, f"{path.name}:{node.name} has {lines} lines"


def test_private_keras_access_lives_only_in_the_compat_module():
    # Outside compat.py: no keras.src, and no private attribute (`x._name`) of anything but
    # the object's own class (self, cls, super()), so no Keras or TensorFlow internals.
    for path in PACKAGE.rglob("*.py"):
        if path.name == "compat.py":
            continue
        tree = ast.parse(path.read_text())
        assert "keras.src" not in path.read_text(), path
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue
            value = node.value
            own = isinstance(value, ast.Name) and value.id in ("self", "cls")
            own |= isinstance(value, ast.Call) and ast.unparse(value.func) == "super"
            assert own, f"{path.relative_to(PACKAGE)}:{node.lineno} reads {ast.unparse(node)}"


def test_the_compat_guard_checks_every_private_attribute_compat_uses():
    from tfinetune import compat

    tree = ast.parse((PACKAGE / "compat.py").read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    }
    used |= {"reduce_per_replica"}  # a public name in a private module (keras.src)
    checked = {name for _, name in compat.private_sites()}
    assert used <= checked, used - checked


RUNS_MAY_IMPORT = {"runs", "data", "models", "training", "evaluation", "serving", "sizes"}
RUNS_MAY_IMPORT |= {"compat", "atomic", "bars", "logs", "fields"}


def test_imports_run_down_the_flow():
    # Each step may import only the steps before it (and the shared helpers); `runs` every
    # step; `cli` (argument parsing, printing, the demo) runs and the steps.
    allowed = {
        "data": {"data", "sizes", "compat", "atomic", "bars"},
        "models": {"models", "sizes", "compat", "fields"},
        "training": {"training", "models", "sizes", "compat", "fields"},
        "evaluation": {"evaluation", "data", "sizes", "atomic"},
        "serving": {"serving", "data", "models", "sizes", "atomic", "bars"},
        # Cleaning looks at data through a model's eyes and draws as evaluation does.
        "cleaning": {"cleaning", "data", "models", "evaluation", "sizes", "atomic", "bars"},
        # Whole runs sit on every step; the command line sits on runs, and nothing on it.
        "runs": RUNS_MAY_IMPORT,
        "cli": RUNS_MAY_IMPORT | {"cli", "runs", "cleaning"},
    }
    for step, may_import in allowed.items():
        for path in (PACKAGE / step).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "tfinetune."
                ):
                    target = node.module.split(".")[1]
                    assert target in may_import, (
                        f"{path.relative_to(PACKAGE)} imports {node.module}"
                    )


@pytest.mark.parametrize("imports", ["keras, tfinetune", "tfinetune, keras"])
def test_importing_tfinetune_registers_every_class_a_saved_model_can_hold(imports):
    """After `import tfinetune`, before or after keras, Keras knows each `tfinetune>` class of
    `models/` and `training/`, so `keras.saving.load_model` reads any saved model (mirrored,
    regression, attention-pooled, TF Hub; compiled with tfinetune's schedules and loss)."""
    decorated = set()
    for step in ("models", "training"):
        for path in (PACKAGE / step).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    "register_keras_serializable" in ast.unparse(d) for d in node.decorator_list
                ):
                    decorated.add(f"tfinetune>{node.name}")
    code = (
        f"import {imports}\n"
        "names = keras.saving.get_custom_objects()\n"
        "print(' '.join(k for k in names if k.startswith('tfinetune>')))"
    )
    done = _run("-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    registered = set(done.stdout.split())
    assert len(decorated) >= 8 and decorated <= registered, decorated - registered


def test_cli_holds_only_argument_parsing_printing_and_the_demo():
    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py"))
    assert modules == ["__init__", "__main__", "arguments", "commands", "demo", "doctor",
                       "examples", "main", "parser", "values"]  # fmt: skip
    for path in PACKAGE.rglob("*.py"):  # nothing but the command line imports it
        if path.parent.name != "cli" and path.parent != PACKAGE:
            assert "tfinetune.cli" not in path.read_text(), path


def test_each_sub_package_docstring_names_every_module_in_it():
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        for module in sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_")):
            assert f"`{module}`" in docstring, f"{package.name}/__init__.py omits {module}"


def test_the_longest_first_list_names_test_files_that_exist():
    """A renamed slow file would silently drop back to the end of the workers' queue."""
    from conftest import LONGEST_FIRST

    tests = Path(__file__).parent
    assert [name for name in LONGEST_FIRST if not (tests / name).is_file()] == []
