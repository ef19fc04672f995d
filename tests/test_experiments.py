"""Experiment files, the run folder's record, and repeatable seeds."""

from __future__ import annotations

import io
import json
import re
import tomllib
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from tfinetune.cli import main
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.models.mirror import mirrors
from tfinetune.models.saving import load_keras_model
from tfinetune.runs.experiment import ConfigError, Experiment, from_dict, load_config, to_toml
from tfinetune.runs.folder import read_manifest
from tfinetune.runs.overrides import apply_flags
from tfinetune.runs.train import train_run

TINY = ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "16"]
TINY += ["--batch-size", "8"]


def _png(path: Path, seed: int, fmt: str = "PNG", **options) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp("e") / "data", ["ring", "star"], 6, size=16)


def test_init_writes_a_commented_file_that_reads_back_as_the_defaults(tmp_path, capsys):
    path = tmp_path / "experiment.toml"
    assert main(["init", str(path)]) == 0
    text = path.read_text()
    assert "(attention: sound only); one of avg, max, avgmax, attention" in text
    assert "[[stages]]" in text
    loaded = load_config(path)
    assert loaded.data.train == str((tmp_path / "photos/train").resolve())
    assert loaded.stages == Experiment().stages and loaded.model == Experiment().model
    assert main(["init", str(path)]) == 2  # never over a file
    assert "exists; choose a new file name" in capsys.readouterr().err


def test_a_config_file_runs_and_flags_and_set_override_it(data, tmp_path, capsys):
    config = tmp_path / "e.toml"
    config.write_text(
        f'seed = 5\n[data]\ntrain = "{data.name}"\nbatch_size = 4\n'
        '[model]\nbackbone = "convnet_tiny"\nweights = "none"\npooling = "max"\n'
        "[[stages]]\nname = 'head'\nepochs = 1\ntrain_groups = 1\nlearning_rate = 0.01\n"
        "[[stages]]\nname = 'all'\nepochs = 3\ntrain_groups = 99\nlearning_rate = 0.001\n"
    )  # data.train relative to the file's folder, which is not the working directory
    (tmp_path / data.name).symlink_to(data)
    args = ["train", "--config", str(config), "--image-size", "16", "--out", str(tmp_path / "run")]
    sets = ["stages.2.epochs=1", "model.pooling='avgmax'", "evaluation.tta=true", "export.top_k=1"]
    assert main([*args, *(f"--set={s}" for s in sets)]) == 0
    run = tmp_path / "run"
    saved = load_config(run / "config.toml")
    assert saved.seed == 5 and saved.data.batch_size == 4 and saved.data.image_size == 16
    assert saved.model.pooling == "avgmax" and [s.epochs for s in saved.stages] == [1, 1]
    assert Path(saved.data.train).is_absolute()
    assert json.loads((run / "metrics.json").read_text())["tta"] is True
    assert mirrors(load_keras_model(run / "model.keras"))  # what the report measured, served
    contract = run / "saved_model" / "1" / "assets.extra" / "preprocessing.json"
    assert json.loads(contract.read_text())["top_k"] == 1
    history = json.loads((run / "history.json").read_text())
    assert [(s["name"], s["end"]) for s in history["stages"]] == [("head", 1), ("all", 2)]
    environment = json.loads((run / "environment.json").read_text())
    assert environment["tensorflow"] and environment["keras"] == keras.__version__
    readme = (run / "README.md").read_text()
    assert f"tfinetune predict {run.name} " in readme and "validation accuracy" in readme
    # The run's own config.toml runs the same experiment again.
    again = ["train", "--config", str(run / "config.toml"), "--out", str(tmp_path / "again")]
    assert main(again) == 0
    assert load_config(tmp_path / "again" / "config.toml") == saved


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[model]\npoolin = 'max'\n",
            "Unknown key 'model.poolin' in .*Did you mean 'model.pooling'",
        ),
        ("[data]\nbatch_size = 'big'\n", r"data.batch_size must be a whole number, not 'big'"),
        ("[data]\ntrain = 'no/such/folder'\n", "Data folder not found: .*no/such/folder"),
        ("[[stages]]\nepochs = 1.5\n", r"stages.1.epochs must be a whole number, not 1.5"),
        ("seed = \n", "is not valid TOML"),
    ],
)
def test_a_bad_config_is_one_clear_line_and_writes_nothing(tmp_path, capsys, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()


def test_set_names_the_bad_key_or_position():
    with pytest.raises(ConfigError, match="stages has 2 entries, numbered from 1; '3'"):
        Experiment().with_values({"stages.3.epochs": 1})
    with pytest.raises(ConfigError, match=r"Unknown key 'model.polling'. Did you mean 'pooling'"):
        Experiment().with_values({"model.polling": "max"})
    with pytest.raises(ConfigError, match=r"model.hidden_units.2 must be a whole number"):
        from_dict({"model": {"hidden_units": [64, "x"]}})
    assert tomllib.loads(to_toml(Experiment()))["model"]["hidden_units"] == []


def test_the_manifest_lists_every_file_used_skipped_or_ignored(tmp_path):
    root = tmp_path / "data"
    for label in range(2):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(4):
            _png(root / f"c{label}" / f"{i}.png", seed=10 * label + i)
    _png(root / "c0" / "photo.webp", seed=99, fmt="WEBP", lossless=True)
    _png(root / "c1" / "scan.tiff", seed=98, fmt="TIFF")
    (root / "c1" / ".DS_Store").write_bytes(b"\x00\x01")
    flags = {"data": root, "val_split": 0.25, "backbone": "convnet_tiny", "weights": "none",
             "image_size": 16, "batch_size": 4, "epochs": 1, "freeze_epochs": 0}  # fmt: skip
    run = train_run(apply_flags(Experiment(), flags), tmp_path / "run", verbose=0)
    rows = {
        Path(r["path"]).name + "@" + r["path"].split("/")[-2]: r for r in read_manifest(run.out_dir)
    }
    assert rows["scan.tiff@c1"]["status"] == "skipped"
    assert rows["scan.tiff@c1"]["reason"].startswith("a TIFF image")
    assert rows[".DS_Store@c1"]["status"] == "ignored"
    webp = rows["photo.webp@c0"]
    assert webp["status"] in ("used", "skipped")  # used where TensorFlow decodes WebP
    used = [r for r in rows.values() if r["status"] == "used"]
    assert {r["split"] for r in used} == {"train", "val"}
    assert all(r["label"] == r["path"].split("/")[-2] for r in used)
    assert len(used) == 8 + (webp["status"] == "used")


def test_one_seed_gives_bitwise_identical_weights(data, tmp_path):
    flags = {"data": data, "backbone": "convnet_tiny", "weights": "none", "image_size": 16,
             "batch_size": 4, "epochs": 1, "freeze_epochs": 1, "augment": "medium"}  # fmt: skip
    weights = []
    for name in ("a", "b", "c"):
        seed = 7 if name != "c" else 8
        e = apply_flags(Experiment(), {**flags, "seed": seed})
        e = e.with_values({"export.saved_model": False})  # the weights are the point here
        weights.append(train_run(e, tmp_path / name, verbose=0).model.get_weights())
    assert all(np.array_equal(x, y) for x, y in zip(weights[0], weights[1], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(weights[0], weights[2], strict=True))


def test_train_groups_all_is_accepted_by_the_flags_the_file_and_the_stages(capsys):
    from tfinetune.cli.arguments import build_parser
    from tfinetune.runs.train import stages_of

    parsed = build_parser().parse_args(["train", "--train-groups", "all"])
    assert parsed.train_groups == "all"
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["train", "--train-groups", "none"])
    assert refused.value.code == 2 and "invalid whole number: 'none'" in capsys.readouterr().err
    experiment = apply_flags(Experiment(), {"train_groups": "all"})
    assert experiment.stages[-1].train_groups == "all"
    assert stages_of(from_dict(tomllib.loads(to_toml(experiment))))[-1].train_groups == "all"


def test_the_file_holds_the_objects_fine_tune_takes():
    from tfinetune import PerformanceConfig, Stage, TrainingConfig
    from tfinetune.runs.checks import check_values

    text = """
    [training]
    optimizer = "sgd"
    gradient_accumulation_steps = 2
    [[stages]]
    epochs = 2
    lr_decay = 0.5
    """
    experiment = from_dict(tomllib.loads(text.replace("\n    ", "\n")))
    assert type(experiment.stages[0]) is Stage and experiment.stages[0].lr_decay == 0.5
    assert type(experiment.training) is TrainingConfig
    assert type(experiment.performance) is PerformanceConfig
    # A section's missing keys keep the experiment's defaults, not the class's.
    assert experiment.training.label_smoothing == Experiment().training.label_smoothing == 0.1
    assert experiment.performance.deterministic_ops == "auto"
    assert from_dict(tomllib.loads(to_toml(experiment))) == experiment
    with pytest.raises(ConfigError, match=r"Unknown key 'training\.loss'"):
        from_dict({"training": {"loss": "mse"}})  # a Python object: not a file's
    with pytest.raises(ConfigError, match=r"training\.optimizer is 'sgdd': it must be one of"):
        check_values(experiment.with_values({"training.optimizer": "sgdd"}))
