"""The command line a user meets first: its version, its answers to mistakes, its words.

Each mistake gets one line on stderr and exit code 2 (a usage error), naming the likely
flag or command; an error message never asks a shell user for Python keyword syntax.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tfinetune
from tfinetune.cli import main
from tfinetune.cli.arguments import build_parser
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.data.tables import read_csv_files
from tfinetune.data.text import read_text_csv


def _usage_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err  # one line, not argparse's usage block
    return lines[0]


def test_version_prints_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    version = importlib.metadata.version("tfinetune")
    assert version == tfinetune.__version__
    assert capsys.readouterr().out.strip() == f"tfinetune {version}"


@pytest.mark.parametrize(
    "args, hint",
    [
        (["train", "--weigths", "none"], "unrecognized arguments: --weigths none. Did you mean "
         "--weights?"),
        (["export", "run", "--out", "x", "--quantise", "int8"], "Did you mean --quantize?"),
        (["trian", "--data", "x"], "invalid choice: 'trian'"),
        (["evaluate", "run", "--data", "d", "--out", "o", "--freeze-epochs", "2"],
         "--freeze-epochs belongs to: tfinetune train / distill."),
    ],
)  # fmt: skip
def test_a_mistyped_flag_or_command_names_the_close_match(args, hint, capsys):
    line = _usage_error(args, capsys)
    assert hint in line
    assert line.startswith(f"tfinetune{' ' + args[0] if args[0] != 'trian' else ''}: error:")
    assert line.endswith("--help)")
    if args[0] == "trian":
        assert "Did you mean 'train'?" in line


def test_an_unknown_flag_with_no_close_match_gets_no_guess(capsys):
    line = _usage_error(["train", "--data", "x", "--bogus"], capsys)
    assert "unrecognized arguments: --bogus." in line and "Did you mean" not in line


@pytest.mark.parametrize("flag", ["--debug", "--verbose"])
def test_global_flags_work_after_the_command_too(flag):
    name = flag.lstrip("-")
    after = build_parser().parse_args(["doctor", flag])
    before = build_parser().parse_args([flag, "doctor"])
    neither = build_parser().parse_args(["doctor"])
    assert getattr(after, name) is getattr(before, name) is True
    assert getattr(neither, name) is False


def test_init_refuses_an_existing_file_unless_forced(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text("# mine\n")
    assert main(["init", str(path)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err
    assert path.read_text() == "# mine\n"
    assert main(["init", str(path), "--force"]) == 0
    assert "[data]" in path.read_text()


def _bom_csv(path: Path, text: str) -> Path:
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # Excel's "CSV UTF-8"
    return path


def test_csvs_saved_by_excel_with_a_byte_order_mark_are_read(tmp_path):
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 2, size=16)
    rows = "path,label\n" + "".join(f"{p.relative_to(data)},{p.parent.name}\n"
                                    for p in sorted(data.rglob("*.png")))  # fmt: skip
    files = read_csv_files(_bom_csv(data / "labels.csv", rows))
    assert files.class_names == ["ring", "star"] and len(files.paths) == 4
    texts = read_text_csv(_bom_csv(tmp_path / "t.csv", "text,label\nfine,pos\nbad,neg\n"))
    assert texts.texts == ["fine", "bad"] and texts.class_names == ["neg", "pos"]


def test_a_csv_without_the_columns_is_answered_in_flags(tmp_path, capsys):
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 2, size=16)
    (data / "labels.csv").write_text("file,label\nring/a.png,ring\n")
    args = ["train", "--csv", str(data / "labels.csv"), "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has no column 'path'" in err
    assert "--path-column and --label-column" in err and "path_column" not in err


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("model.pooling=mean", "model.pooling is 'mean': it must be one of avg, max"),
        ("stages.2.epochs=-1", "stages.2.epochs is -1: it must be 0 or more."),
        ("data.augment=bogus", "data.augment is 'bogus': it must be a policy"),
        ("performance.precision=fp16", "performance.precision is 'fp16'"),
    ],
)
def test_a_bad_set_value_names_its_key_before_any_data_is_read(
    assignment, message, tmp_path, capsys
):
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 2, size=16)
    (data / "ring" / "broken.png").write_bytes(b"not an image")  # a scan would report it
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--set", assignment]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "broken.png" not in captured.out + captured.err and "file" not in captured.out
    assert not list(tmp_path.glob("run*"))


# Messages meant for Python callers only: no flag of the command line reaches them.
PYTHON_ONLY = {
    "tfinetune/models/classifier.py": "mirror=True",  # build_classifier(mirror=...) in Python
    "tfinetune/data/tfds.py": "download=True",  # tfds_datasets(download=...) in Python
}


def test_no_error_message_asks_a_shell_user_for_python_keywords():
    parser = build_parser()
    root = Path(tfinetune.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            text = "".join(n.value for n in ast.walk(node.exc)
                           if isinstance(n, ast.Constant) and isinstance(n.value, str))  # fmt: skip
            told = parser.in_flags(text)
            for keyword in re.findall(r"\b\w+=(?:True|None)\b", told):
                name = str(path.relative_to(root.parent))
                if PYTHON_ONLY.get(name) != keyword:
                    found.append((name, keyword))
    assert not found
    assert len(PYTHON_ONLY) == 2


def test_help_and_usage_errors_answer_without_tensorflow():
    code = (
        "import sys\nfrom tfinetune.cli import main\n"
        "try:\n    main(['train', '--weigths', 'x'])\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.split() == ["False", "False"]
    assert "Did you mean --weights?" in done.stderr


def test_every_flag_has_help_and_defaults_are_shown():
    parser = build_parser()
    for name, command in parser.commands.items():
        for action in command._actions:
            assert action.help, (name, action.option_strings or action.dest)
        example = command.format_help().split("example:\n  ")[1].strip()
        assert example.startswith(f"tfinetune {name} "), name
    text = parser.commands["export"].format_help()
    assert "(default: saved_model)" in text and "(default: float32)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    # train's many flags come in groups, in the order a run needs them
    help_text = parser.commands["train"].format_help()
    titles = ["data:", "model and head:", "training:", "performance and repeatability:",
              "experiment file and run folder:"]  # fmt: skip
    places = [help_text.index(f"\n{t}\n") for t in titles]
    assert places == sorted(places)
    assert help_text.index("\n  --freeze-epochs") > help_text.index("\ntraining:\n")


@pytest.mark.parametrize("command", ["train", "distill", "lr-find", "evaluate", "export", "verify"])
def test_every_command_names_its_data_the_same_way(command, capsys):
    parser = build_parser().commands[command]
    assert {"--data", "--csv"} <= set(parser.flags)
    first = {"evaluate": ["run"], "export": ["run"], "verify": ["art"]}.get(command, [])
    line = _usage_error([command, *first, "--data", "d", "--csv", "c.csv"], capsys)
    assert "argument --csv: not allowed with argument --data" in line


def _squeezed(text: str) -> str:  # help wraps lines (and breaks at hyphens): compare unwrapped
    return "".join(text.split())


def test_each_run_option_is_declared_once_and_help_init_and_flags_agree(tmp_path):
    import tomllib

    from tfinetune.runs.experiment import Experiment
    from tfinetune.runs.flags import STAGE_FLAGS, SWITCHES, field_flags
    from tfinetune.runs.overrides import apply_flags
    from tfinetune.runs.schema import plain

    declared = field_flags()
    parser = build_parser()
    # The flags: train's are the declared ones (distill adds its own section) and no more.
    run_only = {"--backend", "--config", "--set", "--out", "--overwrite", "--resume",
                "--allow-changes", "--quiet", "--verbose", "--debug", "-h", "--help"}  # fmt: skip
    for command, sections in (("train", {"distill"}), ("distill", set())):
        expected = {n for f in declared if f.section not in sections for n in f.names}
        expected |= {n for f in (*STAGE_FLAGS, *SWITCHES) for n in f.names}
        assert set(parser.commands[command].flags) == expected | run_only, command
    # The keys and the help: `tfinetune init` writes each declared key under its help,
    # and `--help` shows the same help for its flag.
    assert main(["init", str(tmp_path / "e.toml")]) == 0
    written = (tmp_path / "e.toml").read_text()
    keys = tomllib.loads(written)
    helps = _squeezed(parser.commands["distill"].format_help())
    for flag in declared:
        section, _, name = flag.key.rpartition(".")
        assert name in (keys[section] if section else keys), flag.key
        assert re.search(rf"# {re.escape(flag.help)}.*\n{name} = ", written), flag.key
        assert _squeezed(flag.help) in helps, flag.names
    # The override: each flag's value lands on its key, and nowhere else.
    samples = {bool: True, int: 3, float: 0.25, str: "x", list: [7]}  # none a default
    defaults = _flat(plain(Experiment()))
    for flag in declared:
        value = flag.choices[-1] if flag.choices else samples[flag.kind]
        changed = _flat(plain(apply_flags(Experiment(), {flag.dest: value})))
        assert {k for k in changed if changed[k] != defaults[k]} == {flag.key}
        as_file = (
            {"true": True, "false": False}.get(value, value)
            if value in ("true", "false")
            else value
        )
        assert changed[flag.key] == as_file, flag.key


def _flat(tree: dict, prefix: str = "") -> dict:
    """Nested sections as dotted keys (lists, such as the stages, as one value)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def test_the_choices_a_flag_offers_are_the_ones_the_engine_takes():
    import keras

    from tfinetune.data.files import SCAN_CHECKS
    from tfinetune.data.images import RESIZE_MODES
    from tfinetune.models.heads import POOLINGS, TASKS
    from tfinetune.runs.flags import SCHEDULES, field_flags
    from tfinetune.training.distribution import STRATEGIES
    from tfinetune.training.options import OPTIMIZERS
    from tfinetune.training.performance import PRECISIONS
    from tfinetune.training.schedules import SCHEDULES as ENGINE_SCHEDULES

    choices = {f.key: set(f.choices) for f in field_flags() if f.choices}
    assert choices == {
        "data.task": set(TASKS), "data.resize": set(RESIZE_MODES),
        "model.pooling": set(POOLINGS), "training.optimizer": set(OPTIMIZERS),
        "performance.precision": set(PRECISIONS), "performance.strategy": set(STRATEGIES),
        "performance.jit_compile": {"auto", "true", "false"},
        "data.scan": set(SCAN_CHECKS),
    }  # fmt: skip
    assert set(SCHEDULES) == set(ENGINE_SCHEDULES)
    for name in OPTIMIZERS:
        assert isinstance(keras.optimizers.get(name), keras.optimizers.Optimizer)
