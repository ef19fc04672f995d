"""How `tfinetune train` behaves as the data grows: folders and shards of 10k to 1M images.

For each size, a synthetic dataset of small JPEGs (32 x 32, ten classes, written once under
`--root`, as a class folder and as `tfinetune convert` shards of 1,000) is trained on by the
real command in a fresh process (`tfinetune train`, convnet_tiny at 32 px, batch 256, no
augmentation, no validation), which measures:

- **time to first step**: from the moment the command is started (Python and TensorFlow
  imports included) to the end of the first training step: the scan (headers above 20,000
  files), the label pass over shards, the manifest, building the pipeline and the model;
- **peak memory**: the process's peak resident set (`VmHWM`) at its end;
- **steady throughput**: images per second over steps 6 to 36 of the first epoch (wall
  clock), and CPU seconds per image over the same steps (`time.process_time`, every thread
  of the process), within the first pass over the data at every size, so that no size reads
  a cache the others do not.

Sizes run interleaved, repeated (`--repeats`), medians reported; the ratio of each size's
throughput to the 10k run's of the same source is computed per repeat. Up to 2 GiB of
decoded images (the 10k and 100k runs) the first pass goes through the memory cache, whose
stored batches make the whole pipeline serial under the op determinism training uses on a
CPU; `--uncached` adds the smallest size's folder and shards with the cache off (the
pipeline the 1M runs get) and the ratio of every run to that of its source, a baseline
without that handicap.

    python benchmarks/scale.py --sizes 10000 100000 1000000 --out benchmarks/results/scale.json
    python benchmarks/scale.py --sizes 10000 1000000 --uncached \
        --out benchmarks/results/scale_uncached.json
    python benchmarks/scale.py --smoke   # tiny sizes: the whole path, in about a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np

CLASSES = [f"class_{i}" for i in range(10)]
BATCH, FIRST_MEASURED, STEPS = 256, 6, 36
UNCACHED = " uncached"  # a source at the smallest size with the memory cache off


def _write_some(job: tuple[str, int, int]) -> int:
    """Write images `start` to `stop` of a folder (one worker's share)."""
    from PIL import Image

    root, start, stop = job
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        c = i % len(CLASSES)
        pixels = rng.integers(0, 96, (32, 32, 3), dtype=np.uint8)
        pixels[..., c % 3] += np.uint8(100 + 10 * c)  # a tint per class
        Image.fromarray(pixels).save(Path(root) / CLASSES[c] / f"{i:07d}.jpg", quality=90)
    return stop - start


def write_dataset(root: Path, size: int) -> dict:
    """The folder and the shards of `size` images, written once (a marker says done)."""
    folder, shards = root / f"folder_{size}", root / f"shards_{size}"
    done = root / f"done_{size}.json"
    if done.is_file():
        return json.loads(done.read_text())
    started = time.perf_counter()
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    chunk = 5000
    jobs = [(str(folder), s, min(size, s + chunk)) for s in range(0, size, chunk)]
    with Pool(os.cpu_count()) as pool:
        written = sum(pool.imap_unordered(_write_some, jobs))
    folder_seconds = time.perf_counter() - started
    started = time.perf_counter()
    from tfinetune.data.records import convert_folder

    convert_folder(folder, shards, val_split=0, shard_size=1000)
    facts = {
        "images": written,
        "folder_bytes": sum(p.stat().st_size for p in folder.rglob("*.jpg")),
        "shard_bytes": sum(p.stat().st_size for p in shards.glob("*.tfrecord")),
        "write_folder_seconds": folder_seconds,
        "convert_seconds": time.perf_counter() - started,
    }
    done.write_text(json.dumps(facts))
    return facts


def run_child(
    source: str, data: Path, out: Path, steps: int,
    script: str = __file__, before: Sequence[str] = (), extra: Sequence[str] = (),
) -> dict:  # fmt: skip
    """`tfinetune train` in a fresh process; what its timing callback measured.

    `script --child *before RESULT TIMING train ... *extra` is run: another benchmark can
    time the same command with a `script` of its own (`decode_log.py`).
    """
    result = out.with_suffix(".json")
    timing = f"{BATCH},{FIRST_MEASURED},{steps}"
    command = [sys.executable, script, "--child", *before, str(result), timing, "train",
               "--data", str(data), "--out", str(out), "--backbone", "convnet_tiny",
               "--weights", "none", "--image-size", "32", "--batch-size", str(BATCH),
               "--augment", "none", "--epochs", "0", "--freeze-epochs", "1", *extra]  # fmt: skip
    if source == "folder":
        command += ["--val-split", "0"]
    started = time.time()
    done = subprocess.run([*command, "--t0", repr(started)], capture_output=True, text=True)
    facts = json.loads(result.read_text()) if result.is_file() else {}
    if done.returncode != 0 or facts.get("exit") or "images_per_second" not in facts:
        raise RuntimeError(f"{source} {data}: {done.stderr.strip().splitlines()[-3:]}")
    facts["total_seconds"] = time.time() - started
    return facts


def peak_rss_mb() -> float:
    """This process's peak resident set in MB: `VmHWM`, which (unlike `ru_maxrss`, kept
    across `exec` on Linux) starts anew in a fresh process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(result: str, timing: str, argv: list[str]) -> None:
    """In the fresh process: time the steps of `tfinetune train ARGV` and write `result`
    (`timing`: the batch size, the first step measured and the steps, comma-separated)."""
    import keras

    import tfinetune.runs.train as train_module
    from tfinetune.cli import main

    t0 = float(argv[argv.index("--t0") + 1])
    argv = argv[: argv.index("--t0")]
    batch_size, first, steps = (int(n) for n in timing.split(","))
    facts: dict = {}

    class Timing(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.cpu = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.time())
            self.cpu.append(time.process_time())
            if batch == 0 and "first_step_seconds" not in facts:
                facts["first_step_seconds"] = self.ends[0] - t0
            if len(self.ends) == steps:
                n = (steps - first) * batch_size  # not `batch`: that is the step's index
                wall = self.ends[-1] - self.ends[first - 1]
                cpu = self.cpu[-1] - self.cpu[first - 1]
                facts.update(images_per_second=n / wall, cpu_seconds_per_image=cpu / n)
                facts["rss_after_steps_mb"] = peak_rss_mb()

    original = train_module.fine_tune

    def timed(*args, callbacks=(), training, **kwargs):
        # Only the steps measured: then no epoch is a whole pass, and nothing can be named
        # as failing to decode (the run would do the same with steps_per_epoch).
        training = dataclasses.replace(training, steps_per_epoch=steps)
        kept = [c for c in callbacks if not isinstance(c, train_module.SkippedInTraining)]
        return original(*args, callbacks=[*kept, Timing()], training=training, **kwargs)

    train_module.fine_tune = timed
    code = main(argv)
    facts["peak_rss_mb"] = peak_rss_mb()
    facts["exit"] = code
    Path(result).write_text(json.dumps(facts))


def summarise(runs: list[dict]) -> dict:
    """Medians per (source, size), and each size's throughput against the 10k-image run's
    (the smallest size) of the same source and repeat, and against the uncached one's when
    there is one."""
    table: dict = {}
    smallest = min(r["size"] for r in runs)
    uncached = any(r["source"].endswith(UNCACHED) for r in runs)
    for r in runs:
        base = next(b for b in runs if b["source"] == r["source"] and b["size"] == smallest
                    and b["repeat"] == r["repeat"])  # fmt: skip
        r["throughput_vs_smallest"] = r["images_per_second"] / base["images_per_second"]
        if uncached:
            source = r["source"].removesuffix(UNCACHED) + UNCACHED
            base = next(b for b in runs if b["source"] == source and b["repeat"] == r["repeat"])
            r["throughput_vs_uncached"] = r["images_per_second"] / base["images_per_second"]
        table.setdefault(f"{r['source']} {r['size']}", []).append(r)
    keys = [
        "first_step_seconds",
        "peak_rss_mb",
        "images_per_second",
        "cpu_seconds_per_image",
        "throughput_vs_smallest",
        "total_seconds",
    ] + ["throughput_vs_uncached"] * uncached
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in keys}
        | {f"{k}_all": [round(r[k], 4) for r in rs] for k in keys}
        for name, rs in table.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "tfinetune_scale"))
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument(
        "--uncached", action="store_true", help="also the smallest size, memory cache off"
    )
    args = parser.parse_args()
    steps = STEPS
    if args.smoke:
        args.sizes, args.repeats = [600, 1200], 1
        globals().update(BATCH=16, FIRST_MEASURED=2, STEPS=12)
        steps = 12
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    datasets = {size: write_dataset(root, size) for size in args.sizes}
    print(json.dumps(datasets, indent=1), flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for size in args.sizes:
                sources = ["folder", "shards"]
                if args.uncached and size == min(args.sizes):
                    sources += [source + UNCACHED for source in sources]
                for source in sources:
                    kind = source.removesuffix(UNCACHED)  # folder or shards
                    out = Path(scratch) / f"run_{source.replace(' ', '_')}_{size}_{repeat}"
                    before = ["--no-cache"] if source != kind else []
                    facts = run_child(kind, root / f"{kind}_{size}", out, steps, before=before) | {
                        "source": source, "size": size, "repeat": repeat}  # fmt: skip
                    runs.append(facts)
                    print(json.dumps(facts), flush=True)
    import tensorflow as tf

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "tensorflow": tf.__version__},
        "settings": {"batch": BATCH, "steps": steps, "measured_from_step": FIRST_MEASURED,
                     "image": "32x32 JPEG", "model": "convnet_tiny", "classes": len(CLASSES)},
        "datasets": datasets, "summary": summarise(runs), "runs": runs,
    }  # fmt: skip
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:3] == ["--child", "--no-cache"]:  # the same, the memory cache off
        import tfinetune.data.pipeline as pipeline

        pipeline.MEMORY_CACHE_LIMIT = 0
        child(sys.argv[3], sys.argv[4], sys.argv[5:])
    elif sys.argv[1:2] == ["--child"]:  # a measured run: --child RESULT TIMING train ...
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
