"""The numbers behind the accuracy bars of the synthetic end-to-end tests, over seeds.

Each test's bar carries a comment pointing here: the test's own setup, trained again with
other seeds, so that a bar sits below what every seed reached (and well above chance).
The setups are imported from the tests themselves, so what is measured is what is tested.

    python benchmarks/test_bars.py --out benchmarks/results/test_bars.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tfinetune.cli import main
from tfinetune.cli.demo import run_demo
from tfinetune.evaluation.calibration import calibrated_report, fit_temperature
from tfinetune.evaluation.report import classification_report
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.overrides import apply_flags
from tfinetune.runs.train import train_run

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the tests' own setups
test_calibration = importlib.import_module("test_calibration")
test_tasks = importlib.import_module("test_tasks")

WEIGHTS = TESTS.parents[1] / "shared/assets/weights"
WEIGHTS = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def calibration(seeds: list[int]) -> list[dict]:
    """test_calibration's under-confident sample (temperature 0.4), ECE before and after."""
    found = []
    for seed in seeds:
        labels, p = test_calibration._sample(0.4, seed=seed)
        before = classification_report(labels, p, list("abcd"))
        after = calibrated_report(before, fit_temperature(labels, p))
        found.append({"seed": seed, "ece_before": before.expected_calibration_error,
                      "ece_after": after.expected_calibration_error})  # fmt: skip
    return found


def demo(seed: int, root: Path, weights: Path | None) -> dict:
    """test_demo's two runs: synthetic pretraining (20 labels per class), or ImageNet
    weights with 10."""
    options = {"weights": weights, "labels_per_class": 10} if weights else {}
    summary = run_demo(root / f"demo{seed}{'w' if weights else ''}", seed=seed, verbose=0,
                       **options)  # fmt: skip
    keys = ("source_accuracy", "fine_tuned_accuracy", "scratch_accuracy")
    return {"seed": seed, **{k: summary[k] for k in keys}}


def multilabel(seed: int, root: Path) -> dict:
    """test_tasks' multi-label run (its data, its flags), trained with another seed."""
    here = root / f"multilabel{seed}"
    train = test_tasks.write_colour_sets(here / "train", 160, seed=1)
    val = test_tasks.write_colour_sets(here / "val", 60, seed=2)
    args = ["train", "--csv", str(train), "--val-csv", str(val), "--task", "multi_label",
            "--label-column", "tags", "--backbone", "convnet_tiny", "--weights", "none",
            "--image-size", "32", "--batch-size", "16", "--freeze-epochs", "1", "--epochs",
            "14", "--train-groups", "6", "--train-bn", "--lr-mult", "1",
            "--fine-tune-learning-rate", "5e-4", "--schedule", "constant",
            "--set", "evaluation.tta=false", "--seed", str(seed), "--out", str(here / "run"),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((here / "run" / "metrics.json").read_text())
    return {"seed": seed, "min_auc": min(m["auc"] for m in metrics["per_class"].values()),
            "subset_accuracy": metrics["subset_accuracy"]}  # fmt: skip


def regression(seed: int, root: Path) -> dict:
    """test_tasks' regression run (its data, its flags), trained with another seed."""
    here = root / f"regression{seed}"
    train = test_tasks.write_coverage(here / "train", 200, seed=3)
    val = test_tasks.write_coverage(here / "val", 60, seed=4)
    flags = {"data": train, "val_data": val, "label_column": "coverage", "task": "regression",
             **test_tasks.TINY, **test_tasks.FAST, "seed": seed}  # fmt: skip
    run = train_run(apply_flags(Experiment(), flags), here / "run", verbose=0)
    spread = float(run.report.targets.std())
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    return {"seed": seed, "mae_over_spread": run.report.mae / spread, "r2": metrics["r2"]}


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--demo-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/test_bars.json"))
    args = parser.parse_args(argv)
    results: dict = {"calibration": calibration(list(range(10)))}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, job, seeds in (("multilabel", multilabel, args.seeds),
                                 ("regression", regression, args.seeds),
                                 ("demo", lambda s, r: demo(s, r, None), args.demo_seeds),
                                 ("demo_imagenet", lambda s, r: demo(s, r, WEIGHTS),
                                  args.demo_seeds if WEIGHTS.is_file() else [])):  # fmt: skip
            results[name] = []
            for seed in seeds:
                started = time.perf_counter()
                found = job(seed, root)
                found["seconds"] = round(time.perf_counter() - started, 1)
                print(name, json.dumps(found), flush=True)
                results[name].append(found)
    for name, rows in results.items():
        for key in rows[0] if rows else ():
            if key not in ("seed", "seconds") and rows[0][key] is not None:
                values = [r[key] for r in rows]
                print(f"{name} {key}: min {min(values):.4f} median {np.median(values):.4f} "
                      f"max {max(values):.4f} over {len(values)} seeds")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main_()
