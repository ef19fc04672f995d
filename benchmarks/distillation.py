"""Distillation against hard labels: the same small student, the same budget, several seeds.

For each seed, the student backbone is fine-tuned twice with tfinetune's default recipe on
the same training folder: once on the labels alone (`tfinetune train`), once distilled from
a fine-tuned teacher run (`tfinetune distill`, default temperature and alpha, not tuned
here). Both are scored on the validation folder and on a second, untouched folder. Then the
teacher's and student's sizes and inference speed (CPU seconds per image, batch 32).

    python benchmarks/distillation.py --teacher RUN --train DIR --val DIR --test DIR \\
        --backbone mobilenet_v2_035 --weights FILE --seeds 1 2 --out results/distillation.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.data.folders import scan_image_folder
from tfinetune.models.saving import load_keras_model
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.overrides import apply_flags
from tfinetune.runs.train import train_run
from tfinetune.serving.inference import KerasClassifier


def accuracy_on(model_file: Path, folder: str) -> float:
    """Top-1 accuracy of a saved Keras model on a labelled folder, files read from disk."""
    classifier = KerasClassifier(model_file)
    files = scan_image_folder(folder, classifier.class_names)
    probs = classifier.predict_files(files.paths)
    return float(np.mean(probs.argmax(axis=1) == np.asarray(files.labels)))


def inference_cost(model_file: Path, repeats: int = 5) -> dict:
    """Parameters, file size, and the median CPU and wall seconds per image at batch 32."""
    model = load_keras_model(model_file)
    batch = tf.random.uniform([32, *model.input_shape[1:3], 3], 0, 255)
    predict = tf.function(lambda x: model(x, training=False))
    predict(batch)  # trace
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        predict(batch).numpy()
        cpu.append((time.process_time() - c) / 32)
        wall.append((time.perf_counter() - w) / 32)
    return {
        "parameters": int(model.count_params()),
        "file_megabytes": round(model_file.stat().st_size / 1e6, 2),
        "cpu_ms_per_image": round(1000 * float(np.median(cpu)), 2),
        "wall_ms_per_image": round(1000 * float(np.median(wall)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="a fine-tuned run folder")
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True, help="a second test folder, never tuned on")
    parser.add_argument("--backbone", default="mobilenet_v2_035")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="benchmarks/results/distillation.json")
    args = parser.parse_args()

    rows = []
    work = Path(tempfile.mkdtemp(prefix="distill-"))
    for seed in args.seeds:
        for variant in ("hard labels", "distilled"):
            run_dir = work / f"{variant.replace(' ', '_')}_{seed}"
            cpu, wall = time.process_time(), time.perf_counter()
            flags = {"data": args.train, "val_data": args.val, "backbone": args.backbone,
                     "weights": args.weights, "seed": seed,
                     "teacher": args.teacher if variant == "distilled" else None}  # fmt: skip
            train_run(apply_flags(Experiment(), flags), run_dir, verbose=0)
            row = {
                "seed": seed,
                "variant": variant,
                "val_accuracy": accuracy_on(run_dir / "model.keras", args.val),
                "test_accuracy": accuracy_on(run_dir / "model.keras", args.test),
                "train_cpu_seconds": round(time.process_time() - cpu, 1),
                "train_wall_seconds": round(time.perf_counter() - wall, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    teacher_file = Path(args.teacher) / "model.keras"
    result = {
        "rows": rows,
        "teacher": {
            "val_accuracy": accuracy_on(teacher_file, args.val),
            "test_accuracy": accuracy_on(teacher_file, args.test),
            **inference_cost(teacher_file),
        },
        "student": inference_cost(work / f"distilled_{args.seeds[0]}" / "model.keras"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| seed | variant | val | test |\n|---|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['variant']} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} |"
        )
    print(json.dumps({k: result[k] for k in ("teacher", "student")}, indent=2))


if __name__ == "__main__":
    main()
