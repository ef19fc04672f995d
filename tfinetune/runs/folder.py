"""The record a run folder keeps: its experiment, the machine, the data manifest, a README.

- `config.toml`: the resolved experiment (`tfinetune train --config` runs it again);
- `environment.json`: package versions, Python, the devices, the command line;
- `manifest.csv`: every file (or record) used, per split, with its label; every file
  skipped, with the reason; the junk passed over;
- `scan/`: what checking the files found (`tfinetune.data.scan_record`), for a resume;
- `README.md`: for a person, a model card (`tfinetune.runs.card`).
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

from tfinetune.atomic import replace_into, write_text
from tfinetune.data.datasets import ImageData
from tfinetune.data.files import LabelledFiles
from tfinetune.runs.experiment import Experiment, load_config, to_toml

CONFIG_FILE, ENVIRONMENT_FILE, MANIFEST_FILE = "config.toml", "environment.json", "manifest.csv"
CHECKPOINTS = "checkpoints"


def versions() -> dict:
    """tfinetune's, TensorFlow's, Keras's (and its backend), NumPy's and Python's versions.

    Example:
    >>> sorted(versions())
    ['keras', 'keras_backend', 'numpy', 'python', 'tensorflow', 'tfinetune']
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from tfinetune import __version__

    return {
        "tfinetune": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.config.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def devices() -> list[dict]:
    """The devices TensorFlow sees: name and type, and a GPU's model and compute capability.

    Example:
    >>> devices()[0]["type"]
    'CPU'
    """
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices():
        facts = {"name": device.name, "type": device.device_type}
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            facts["model"] = details.get("device_name", "")
            capability = details.get("compute_capability", ())
            facts["compute_capability"] = ".".join(map(str, capability))
        found.append(facts)
    return found


def environment() -> dict:
    """The versions, the platform, the devices and the command line: `environment.json`.

    Example:
    >>> sorted(environment())[:3]
    ['command', 'devices', 'keras']
    """
    return {**versions(), "platform": platform.platform(), "devices": devices(),
            "command": sys.argv}  # fmt: skip


def write_record(out: Path, experiment: Experiment) -> None:
    """Write `config.toml` and `environment.json` into a run folder.

    Args:
        out: the run folder.
        experiment: the resolved experiment.
    """
    write_text(out / CONFIG_FILE, to_toml(experiment))
    write_text(out / ENVIRONMENT_FILE, json.dumps(environment(), indent=2) + "\n")


def _label_text(files: LabelledFiles, label) -> str:
    if files.task == "regression":
        return repr(float(label))
    if files.task == "multi_label":
        return " ".join(files.class_names[i] for i in label)
    return files.class_names[label]


def manifest_rows(data: ImageData) -> Iterator[dict]:
    """One row per file (or record, `SHARD#POSITION`): `split`, `path`, `label`, `status`,
    `reason`, made as they are written (a million rows are never held at once).

    The status is `used`, `skipped` (unreadable: found by the scan, or with its split when it
    failed to decode while training or evaluating), `excluded` (left out by `--exclude`) or
    `ignored` (known junk).

    Args:
        data: the run's datasets.
    """

    def row(split, path, label, status, reason=""):
        return {"split": split, "path": path, "label": label, "status": status,
                "reason": reason}  # fmt: skip

    skipped = {"train": data.skipped_in_training, "val": data.skipped_in_validation}
    for split in ("train", "val", "test"):
        files = getattr(data, f"{split}_files")
        failed = skipped.get(split, {})
        pairs = zip(files.paths, files.labels, strict=True) if files else ()
        for i, (path, label) in enumerate(pairs):
            status = "skipped" if i in failed else "used"
            yield row(split, path, _label_text(files, label), status, failed.get(i, ""))
    for split, index in data.records.items():  # shards or TFDS: `SOURCE#POSITION`
        failed = skipped.get(split, {})
        for i, (name, label) in enumerate(index.rows()):
            yield row(split, name, label, "skipped" if i in failed else "used", failed.get(i, ""))
    for bad in data.bad_files:
        yield row("", bad.path, "", "skipped", bad.reason)
    for out in data.excluded:
        yield row("", out.path, "", "excluded", out.reason)
    for path in data.ignored:
        yield row("", path, "", "ignored", "known junk (hidden or system file)")


def write_manifest(out: Path, data: ImageData) -> Path:
    """Write `manifest.csv` (see `manifest_rows`) into a run folder, row by row, atomically.

    Args:
        out: the run folder.
        data: the run's datasets.
    """

    def write(staged: Path) -> None:
        with open(staged, "w", newline="") as f:
            writer = csv.DictWriter(f, ["split", "path", "label", "status", "reason"])
            writer.writeheader()
            writer.writerows(manifest_rows(data))

    return replace_into(out / MANIFEST_FILE, write)


def read_manifest(run: str | Path) -> list[dict]:
    """The rows of a run's `manifest.csv`.

    Args:
        run: the run folder.
    """
    with open(Path(run) / MANIFEST_FILE, newline="") as f:
        return list(csv.DictReader(f))


def check_same_experiment(run: Path, experiment: Experiment) -> None:
    """Refuse to resume a run under an experiment that differs from the one it started with.

    Args:
        run: the unfinished run folder.
        experiment: the experiment to resume with.
    """
    if not (run / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{str(run)!r} holds no {CONFIG_FILE}: it is not a run to resume.")
    before, now = flat(load_config(run / CONFIG_FILE).to_dict()), flat(experiment.to_dict())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise ValueError(
            f"The experiment changed since the run started ({shown}); resuming would mix two "
            "experiments. Resume without changes, pass --allow-changes, or start a new run."
        )


def flat(tree, prefix: str = "") -> dict:
    """A nested dict (lists of dicts numbered from 1) as one dict of dotted keys.

    Args:
        tree: the nested values.
        prefix: put before every key.

    Example:
    >>> flat({"data": {"seed": 1}, "stages": [{"epochs": 2}]})
    {'data.seed': 1, 'stages.1.epochs': 2}
    """
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and tree and isinstance(tree[0], dict):
        return {
            k: v for i, sub in enumerate(tree, 1) for k, v in flat(sub, f"{prefix}{i}.").items()
        }
    return {prefix.rstrip("."): tree}


def check_same_files(run: Path, data: ImageData) -> None:
    """Refuse to resume a run whose data files (used, per split, with labels) changed.

    Args:
        run: the unfinished run folder, with its `manifest.csv`.
        data: the data as read now.
    """
    if not (run / MANIFEST_FILE).is_file():
        return  # stopped before the data was read: nothing to compare

    def used(rows):  # a file that failed while training was in the data all the same
        return {(r["split"], r["path"], r["label"]) for r in rows
                if r["status"] == "used" or (r["status"] == "skipped" and r["split"])}  # fmt: skip

    before, now = used(read_manifest(run)), used(manifest_rows(data))
    if before != now:
        example = sorted(before ^ now)[0]
        raise ValueError(
            f"The data changed since the run started ({len(before ^ now)} file(s) differ, for "
            f"example {example[1]!r}); resuming would train on other files. Pass "
            "--allow-changes to resume anyway, or start a new run."
        )
