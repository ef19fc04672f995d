"""What flagging decoded images (`DecodeLog`) costs a training run, by how the flagging step
is declared.

`tfinetune train` on `scale.py`'s shards of 32 px JPEGs (convnet_tiny, batch 256, the memory
cache off, as at 1M images), in a fresh process per run, steps 6 to 36 of the first epoch
measured as in `scale.py` (images per second, CPU seconds per image), three variants of
`DecodeLog.passed` interleaved and repeated, medians and each run's ratio to the unflagged
run of its repeat:

- **stateless**: what the pipeline does: the batch's labels pass through a NumPy function
  declared stateless that sets the flags;
- **stateful**: the same function declared stateful and joined by a control dependency (what
  the pipeline did before);
- **none**: no flagging (the batch goes on unchanged): the bar.

Training turns TensorFlow's op determinism on on a CPU, under which a pipeline with any
stateful step runs every map serially and prefetches nothing.

    python benchmarks/decode_log.py --size 10000 --repeats 3
    python benchmarks/decode_log.py --size 10000 --repeats 3 --nondeterministic
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import scale

VARIANTS = ("stateless", "stateful", "none")


def patch(variant: str) -> None:
    """Make `DecodeLog.passed` the `variant`, and keep the memory cache off."""
    import numpy as np
    import tensorflow as tf

    import tfinetune.data.pipeline as pipeline
    from tfinetune.data.decode_log import DecodeLog

    pipeline.MEMORY_CACHE_LIMIT = 0
    if variant == "stateful":

        def passed(self, indices, *values):
            rows = tf.reshape(tf.cast(indices, tf.int64), [-1])
            marked = tf.numpy_function(lambda r: self._flag(r, np.bool_(True)), [rows], tf.bool)
            with tf.control_dependencies([marked]):
                return tuple(tf.identity(v) for v in values)

        DecodeLog.passed = passed
    elif variant == "none":
        DecodeLog.passed = lambda self, indices, *values: values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nondeterministic", action="store_true", help="op determinism off")
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "tfinetune_scale"))
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    scale.write_dataset(root, args.size)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                out = Path(scratch) / f"{variant}_{repeat}"
                extra = ["--nondeterministic"] if args.nondeterministic else []
                facts = scale.run_child("shards", root / f"shards_{args.size}", out, scale.STEPS,
                                        script=__file__, before=[variant], extra=extra)  # fmt: skip
                runs[variant].append(facts)
                per_second, cpu = facts["images_per_second"], facts["cpu_seconds_per_image"]
                print(f"{variant} repeat {repeat}: {per_second:.0f} images/s, "
                      f"{cpu * 1e3:.3f} ms CPU/image", flush=True)  # fmt: skip
    print(f"medians over {args.repeats} repeats ({args.size} images, shards, no cache):")
    for variant, rows in runs.items():
        ratios = [r["images_per_second"] / b["images_per_second"]
                  for r, b in zip(rows, runs["none"], strict=True)]  # fmt: skip
        per_second = statistics.median(r["images_per_second"] for r in rows)
        cpu = statistics.median(r["cpu_seconds_per_image"] for r in rows) * 1e3
        print(f"  {variant}: {per_second:.0f} images/s ({statistics.median(ratios):.2f}x of "
              f"none; {min(ratios):.2f}-{max(ratios):.2f}), {cpu:.3f} ms CPU/image")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # --child VARIANT RESULT TIMING train ...
        patch(sys.argv[2])
        scale.child(sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        main()
