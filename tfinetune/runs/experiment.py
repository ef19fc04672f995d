"""Experiment files: one typed object (`Experiment`) for a whole run, read from and written to TOML.

`tfinetune init` writes `Experiment()` with a comment on every key; `tfinetune train --config
FILE` reads one back; `--set stages.2.epochs=3` and the plain flags override single values; a
run folder keeps the resolved experiment as `config.toml`. Unknown keys and wrong types are
errors that name the key and the type expected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfinetune.fields import option
from tfinetune.models.options import HeadOptions
from tfinetune.runs.schema import ConfigError, build, file_fields, merged, plain, set_dotted
from tfinetune.training.options import PerformanceConfig, TrainingConfig
from tfinetune.training.recipe import RECIPE, RECIPE_LABEL_SMOOTHING, Stage


@dataclass
class DataConfig:
    """Where the images come from and how they reach the model."""

    train: str = option(
        "", "training folder (DIR/<class>/<images or WAV files>), CSV file, folder or glob of "
        "TFRecord shards (tfinetune convert), or tfds:NAME", flag=("--data", "--csv"),
    )  # fmt: skip
    val: str = option(
        "", "validation folder, CSV or shards, like train; empty: hold out val_split (a "
        "convert folder: its val shards)", flag=("--val-data", "--val-csv"),
    )  # fmt: skip
    tfds_dir: str = option(
        "", "where tfds:NAME is prepared (downloaded there if missing); empty: TFDS's",
        flag="--tfds-dir",
    )  # fmt: skip
    val_split: float = option(
        0.2, "share held out for validation when there is no val", flag="--val-split"
    )
    exclude: str = option(
        "", "CSV of files to leave out (the issues.csv of `tfinetune clean`: rows whose action "
        "is exclude; or a list with a path column)", flag="--exclude",
    )  # fmt: skip
    scan: str = option(
        "auto", "how files are checked before training: decode each (and hash it for leaks), "
        "read its header only (a corrupt image is then skipped while training and named in "
        "the manifest), or auto: decode up to 20,000 files, headers above", flag="--scan",
        choices=("auto", "decode", "header"),
    )  # fmt: skip
    task: str = option(
        "", "what a CSV's label column holds; empty: multi_label with label_delim, else "
        "single_label", flag="--task", choices=("single_label", "multi_label", "regression"),
    )  # fmt: skip
    path_column: str = option("path", "a CSV's image path column", flag="--path-column")
    label_column: str = option("label", "a CSV's label (or target) column", flag="--label-column")
    text_column: str = option(
        "text", "a text CSV's text column (a CSV without the path column)", flag="--text-column"
    )
    label_delim: str = option(
        "", "separator of several labels in one CSV cell (multi-label)", flag="--label-delim"
    )
    image_size: int = option(
        0, "input size in pixels; 0: the backbone's", flag="--image-size", at_least=1
    )
    clip_seconds: float = option(
        0.0, "sound clips' length in seconds; 0: the backbone's", flag="--clip-seconds"
    )
    batch_size: int = option(32, "images per batch (per replica)", flag="--batch-size", at_least=1)
    augment: str | list[str] = option(
        "light", "none, light, medium, heavy, or layer names (flip,rotation,cutmix; sound: "
        "none, light, noise)", flag="--augment",
    )  # fmt: skip
    resize: str = option(
        "stretch", "how images reach the input size: stretch, centre crop or pad",
        flag="--resize", choices=("stretch", "crop", "pad"),
    )  # fmt: skip
    balance_classes: bool = option(
        False, "weight the loss so that every class counts equally", flag="--balance-classes"
    )


@dataclass
class ModelConfig(HeadOptions):
    """The new head (a `HeadOptions`) and the backbone under it."""

    backbone: str = option(
        "mobilenet_v2", "a catalogue name (tfinetune backbones) or hub:<handle>",
        flag="--backbone",
    )  # fmt: skip
    weights: str = option("imagenet", "imagenet, a weights file, or none", flag="--weights")


@dataclass
class DistillConfig:
    """Distillation from a trained run (empty teacher: none)."""

    teacher: str = option("", "a run folder or .keras file to distil from", flag="--teacher")
    temperature: float = option(
        2.0, "softens the teacher's and the student's outputs", flag="--temperature"
    )
    alpha: float = option(
        0.5, "the labels' share of the loss (the teacher's: 1 - alpha)", flag="--alpha"
    )


@dataclass
class EvaluationConfig:
    """How the validation data is scored at the end of the run."""

    tta: bool = option(
        True, "images: the model averages each image with its mirror (predict and exports too)"
    )


@dataclass
class ExportConfig:
    """The SavedModel the run leaves (saved_model/1/)."""

    top_k: int = option(5, "classes in the serving signatures' top_k_* outputs")
    saved_model: bool = option(
        True, "write saved_model/1 (false, for sweeps: model.keras only, not for export)"
    )


@dataclass
class Experiment:
    """A whole run: data, model, stages, training, distillation, performance, evaluation, export.

    Args:
        seed: seeds Python, NumPy, TensorFlow and Keras, the split and the data order.
        data: the data section.
        model: the model section.
        training: options every stage shares.
        stages: the stages, in order (`stages.1` is the first in `--set`).
        distill: distillation from a teacher.
        performance: performance options.
        evaluation: how the validation data is scored.
        export: the SavedModel the run leaves.

    Example:
    >>> Experiment().with_values({"stages.2.epochs": 3}).stages[1].epochs
    3
    """

    seed: int = option(
        1337, "seeds the split, the weights, the data order and augmentation", flag="--seed"
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(label_smoothing=RECIPE_LABEL_SMOOTHING)
    )
    stages: list[Stage] = field(default_factory=lambda: list(RECIPE))  # the one recipe
    distill: DistillConfig = field(default_factory=DistillConfig)
    performance: PerformanceConfig = field(
        default_factory=lambda: PerformanceConfig(deterministic_ops="auto")
    )
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict:
        """The experiment as plain values (what TOML holds; Python-only fields left out)."""
        return plain(self)

    def with_values(self, values: dict[str, Any]) -> Experiment:
        """A copy with dotted keys set (`"model.pooling"`, `"stages.2.epochs"`; stages from 1).

        Args:
            values: dotted key -> value.
        """
        tree = self.to_dict()
        for dotted, value in values.items():
            set_dotted(tree, dotted, value)
        return from_dict(tree)


def from_dict(values: dict, where: str = "") -> Experiment:
    """An `Experiment` from plain values, checking every key and type.

    Args:
        values: nested sections as TOML gives them; missing keys take their defaults.
        where: the file the values came from, for error messages.

    Example:
    >>> from_dict({"model": {"pooling": 3}})
    Traceback (most recent call last):
    tfinetune.runs.schema.ConfigError: model.pooling must be a string, not 3 (int).
    """
    defaults = Experiment().to_dict()  # a section's missing keys: the experiment's defaults
    return build(Experiment, merged(defaults, values), "", f" in {where}" if where else "")


def load_config(path: str | os.PathLike) -> Experiment:
    """Read an experiment file (TOML); relative paths in it start from its folder.

    Args:
        path: the `.toml` file.

    Example:
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "e.toml"
    >>> _ = p.write_text('seed = 7\\n[data]\\ntrain = "flowers"\\n')
    >>> c = load_config(p); (c.seed, Path(c.data.train).name)
    (7, 'flowers')
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Experiment file not found: {str(path)!r}. `tfinetune init FILE` writes an example."
        )
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{str(path)!r} is not valid TOML: {err}.") from None
    experiment = from_dict(values, str(path))
    return resolve_paths(experiment, path.parent)


def resolve_paths(experiment: Experiment, base: str | os.PathLike) -> Experiment:
    """The experiment with its relative file paths made absolute from `base`.

    Args:
        experiment: the experiment.
        base: the folder relative paths start from.
    """

    def full(value: str) -> str:  # `tfds:NAME` is a name, not a path
        return str((Path(base) / value).resolve()) if value and value[:5] != "tfds:" else value

    weights = experiment.model.weights
    return dataclasses.replace(
        experiment,
        data=dataclasses.replace(
            experiment.data,
            train=full(experiment.data.train),
            val=full(experiment.data.val),
            exclude=full(experiment.data.exclude),
            tfds_dir=full(experiment.data.tfds_dir),
        ),
        model=dataclasses.replace(
            experiment.model,
            weights=weights if weights.lower() in ("imagenet", "none") else full(weights),
        ),
        distill=dataclasses.replace(experiment.distill, teacher=full(experiment.distill.teacher)),
    )


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from `--set`: the value read as TOML (`3`, `true`, `[1, 2]`), else a string.

    Args:
        text: the assignment.

    Example:
    >>> parse_assignment("stages.2.epochs=3"), parse_assignment("model.pooling=max")
    (('stages.2.epochs', 3), ('model.pooling', 'max'))
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes KEY=VALUE, such as stages.2.epochs=3. Received: {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def to_toml(experiment: Experiment, comments: bool = True) -> str:
    """The experiment as a TOML file, each key with its help as a comment.

    Args:
        experiment: the experiment.
        comments: write the help of each key above it.

    Example:
    >>> tomllib.loads(to_toml(Experiment()))["stages"][1]["name"]
    'fine-tune'
    """
    lines: list[str] = []
    _write_table(lines, experiment, "", comments)
    for name, value in experiment.to_dict().items():
        section = getattr(experiment, name)
        if isinstance(value, dict):
            lines += [
                "",
                f"# {type(section).__doc__.splitlines()[0]}" if comments else "",
                f"[{name}]",
            ]
            _write_table(lines, section, "", comments)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for number, stage in enumerate(section, 1):
                lines += ["", f"[[{name}]]  # {name}.{number}"]
                _write_table(lines, stage, "", comments and number == 1)
    return "\n".join(line for line in lines if line is not None) + "\n"


def _write_table(lines: list[str], obj: Any, prefix: str, comments: bool) -> None:
    for f in file_fields(type(obj)):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) or (
            isinstance(value, list) and value and dataclasses.is_dataclass(value[0])
        ):
            continue
        if comments and f.metadata.get("help"):
            choices = f.metadata.get("choices")
            listed = f"; one of {', '.join(map(str, choices))}" if choices else ""
            lines.append(f"# {f.metadata['help']}{listed}")
        if value is None:  # TOML has no null: the key stays unset
            lines.append(f"# {f.name} = (not set)")
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
