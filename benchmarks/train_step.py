"""Training-step throughput: tfinetune's `fine_tune` against a plain Keras `compile`/`fit`.

Every variant trains the same model (`build_classifier`) with the same trainable layers (the
head and the top backbone blocks, `--train-groups`):

- "keras float32": the baseline, written by hand: `layer.trainable` set, `model.compile(Adam)`,
  `model.fit`;
- "keras <precision>": the same under a global mixed-precision policy set before building;
- "tfinetune auto" and "tfinetune <precision>[ + XLA]": one `fine_tune` stage with its
  defaults (discriminative rates over the groups in a `MultiOptimizer`, weight averaging),
  under the named policy.

Each variant runs `--repeats` times, round robin (interleaved), on synthetic batches and
through tfinetune's real input pipeline (`flower_photos_small/train`, cached in memory
before timing). A callback times the batches after the first `--skip` (which include the
tracing), in wall seconds and in CPU seconds of this process (`time.process_time`, all
threads): on shared machines wall time jumps between levels, CPU time much less. The
medians and their ratios to the baseline go to a table and to JSON.

    python benchmarks/train_step.py --out benchmarks/results/train_step.json

On a GPU machine run it as it is: "auto" then means mixed precision and XLA there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from tfinetune import (
    PerformanceConfig,
    Stage,
    TrainingConfig,
    build_classifier,
    fine_tune,
    image_folder_datasets,
)
from tfinetune.training.freezing import freeze_to
from tfinetune.training.performance import resolve_performance

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
WEIGHTS = ASSETS / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
LEARNING_RATE = 1e-4


class StepTimer(keras.callbacks.Callback):
    """Wall and CPU seconds of the batches after the first `skip`."""

    def __init__(self, skip: int) -> None:
        super().__init__()
        self.skip, self.start, self.end, self.batches = skip, None, None, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == self.skip:
            self.start = (time.perf_counter(), time.process_time())
        elif self.batches > self.skip:
            self.end = (time.perf_counter(), time.process_time())


def make_model(args, precision: str = "float32") -> keras.Model:
    """The model every variant trains (built under `precision` for the Keras variants)."""
    keras.utils.set_random_seed(1)
    weights = str(WEIGHTS) if WEIGHTS.exists() and args.backbone == "mobilenet_v2" else None
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return build_classifier(
            args.backbone, 5, weights=weights, image_size=args.image_size, dropout=0.2
        )
    finally:
        keras.config.set_dtype_policy(saved)


def run_keras(args, data, steps: int, precision: str) -> StepTimer:
    model = make_model(args, precision)
    freeze_to(model, args.train_groups)
    model.compile(keras.optimizers.Adam(LEARNING_RATE), "sparse_categorical_crossentropy")
    timer = StepTimer(args.skip)
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return timer


def run_tfinetune(args, data, steps: int, precision: str, xla: bool | str) -> StepTimer:
    model = make_model(args)
    stage = Stage(1, args.train_groups, LEARNING_RATE * 10, "fine-tune", lr_mult=10.0)
    timer = StepTimer(args.skip)
    fine_tune(
        model, data, stages=[stage], training=TrainingConfig(steps_per_epoch=steps),
        performance=PerformanceConfig(precision=precision, jit_compile=xla),
        callbacks=[timer], verbose=0,
    )  # fmt: skip
    return timer


def variants(args) -> dict:
    found = {
        "keras float32": lambda d, n: run_keras(args, d, n, "float32"),
        "tfinetune auto": lambda d, n: run_tfinetune(args, d, n, "auto", "auto"),
    }
    for precision in args.precisions:
        found[f"tfinetune {precision}"] = lambda d, n, p=precision: run_tfinetune(
            args, d, n, p, False
        )
        if precision != "float32":
            found[f"keras {precision}"] = lambda d, n, p=precision: run_keras(args, d, n, p)
    if args.xla:
        found["tfinetune float32 + XLA"] = lambda d, n: run_tfinetune(args, d, n, "float32", True)
    return found


def synthetic(args) -> tuple[tf.data.Dataset, int]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch_size, args.image_size, args.image_size, 3))
    y = rng.integers(0, 5, args.batch_size)
    batch = (tf.constant(x, tf.float32), tf.constant(y, tf.int32))
    return tf.data.Dataset.from_tensors(batch).repeat(), args.steps


def real_pipeline(args) -> tuple[tf.data.Dataset, int] | None:
    root = ASSETS / "datasets" / "flower_photos_small" / "train"
    if not root.is_dir():
        return None
    data = image_folder_datasets(
        root, val_split=0, image_size=args.image_size, batch_size=args.batch_size, seed=1
    ).train
    batches = sum(1 for _ in data)  # fills the memory cache before anything is timed
    return data.repeat(), min(batches, args.steps)


def measure(args, name: str, data: tf.data.Dataset, steps: int) -> dict:
    runs: dict[str, list[tuple[float, float]]] = {}
    todo = variants(args)
    print(f"\n{name}: {steps} steps per run, {args.skip} untimed, {args.repeats} rounds")
    for round_ in range(args.repeats):
        for label, run in todo.items():
            timer = run(data, steps)
            images = (timer.batches - args.skip) * args.batch_size
            wall, cpu = (timer.end[0] - timer.start[0]), (timer.end[1] - timer.start[1])
            runs.setdefault(label, []).append((images / wall, cpu / images))
            print(f"  round {round_ + 1} {label:<28} {images / wall:7.1f} img/s "
                  f"{1000 * cpu / images:7.1f} CPU ms/img", flush=True)  # fmt: skip
    return summarise(runs)


def summarise(runs: dict) -> dict:
    base_rate = statistics.median(r for r, _ in runs["keras float32"])
    base_cpu = statistics.median(c for _, c in runs["keras float32"])
    rows = {}
    for label, values in runs.items():
        rate = statistics.median(r for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        rows[label] = {
            "images_per_s": rate, "cpu_ms_per_image": 1000 * cpu,
            "wall_ratio": rate / base_rate, "cpu_ratio": base_cpu / cpu, "runs": values,
        }  # fmt: skip
    print(f"  {'variant':<28} {'img/s':>8} {'x keras':>8} {'CPU ms/img':>11} {'x keras':>8}")
    for label, row in rows.items():
        print(f"  {label:<28} {row['images_per_s']:8.1f} {row['wall_ratio']:8.2f} "
              f"{row['cpu_ms_per_image']:11.1f} {row['cpu_ratio']:8.2f}")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-groups", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed and untimed steps per run")
    parser.add_argument("--skip", type=int, default=2, help="untimed first steps (tracing)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", nargs="*", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--xla", action="store_true", help="also float32 with XLA")
    parser.add_argument("--no-real", action="store_true", help="synthetic batches only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    policy = resolve_performance()
    print(f"auto policy here: {policy.describe()}")
    result = {"settings": vars(args) | {"out": str(args.out)}, "auto": policy.to_dict()}
    result["synthetic"] = measure(args, "synthetic batches", *synthetic(args))
    real = None if args.no_real else real_pipeline(args)
    if real is not None:
        result["real_pipeline"] = measure(args, "flower_photos_small/train pipeline", *real)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
