"""CPU milliseconds per image for the backbones a user is most likely to choose between.

For README's "Choosing a backbone" table: each backbone of `NAMES` is built as `tfinetune`
builds it (random weights: the cost does not depend on them) at its default input size with
a 10-class head, and predicts batches of 8 images. Per backbone: one warm-up call, then
`--repeats` timed calls; the median wall and CPU (`time.process_time`) milliseconds per
image. `mobilenet_v2` is the baseline: every backbone's CPU time is also given as a ratio to
it, measured in the same run. Both cores of this machine are used by TensorFlow's ops.

    python benchmarks/backbone_cpu.py --out benchmarks/results/backbone_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

NAMES = (
    "mobilenet_v3_small", "mobilenet_v2_035", "mobilenet_v2", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnetv2_b0", "nasnet_mobile", "densenet121", "resnet50",
    "resnet50_v2", "inception_v3", "efficientnetv2_s", "convnext_tiny", "xception",
    "efficientnet_b3",
)  # fmt: skip
BATCH = 8


def measure(name: str, repeats: int) -> dict:
    """Median wall and CPU milliseconds per image of `name`'s prediction step."""
    import keras
    import tensorflow as tf

    from tfinetune import build_classifier
    from tfinetune.models.backbones import get_spec

    size = get_spec(name).default_size
    model = build_classifier(name, 10, weights=None, image_size=size)
    step = tf.function(lambda x: model(x, training=False))
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (BATCH, size, size, 3)),
                         dtype=tf.float32)  # fmt: skip
    step(pixels).numpy()  # trace and warm up
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        step(pixels).numpy()
        walls.append((time.perf_counter() - wall) * 1000 / BATCH)
        cpus.append((time.process_time() - cpu) * 1000 / BATCH)
    keras.backend.clear_session()
    return {
        "backbone": name,
        "image_size": size,
        "wall_ms_per_image": statistics.median(walls),
        "cpu_ms_per_image": statistics.median(cpus),
        "wall_ms": walls,
        "cpu_ms": cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--names", nargs="*", default=list(NAMES))
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    import tensorflow as tf

    rows = []
    for name in args.names:
        row = measure(name, args.repeats)
        rows.append(row)
        print(f"{name:<20}{row['image_size']:>5} px  {row['cpu_ms_per_image']:8.1f} CPU ms/img  "
              f"{row['wall_ms_per_image']:8.1f} wall ms/img", flush=True)  # fmt: skip
    base = next((r["cpu_ms_per_image"] for r in rows if r["backbone"] == "mobilenet_v2"), None)
    for row in rows:
        row["cpu_vs_mobilenet_v2"] = row["cpu_ms_per_image"] / base if base else None
    result = {"batch": BATCH, "repeats": args.repeats, "tensorflow": tf.__version__,
              "machine": platform.processor() or platform.machine(), "rows": rows}  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
