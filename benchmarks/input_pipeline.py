"""Input pipeline throughput: tfinetune against Keras's own image loader, in one run.

For each dataset it measures images per second, epoch by epoch, of
  (a) decode and resize only, in parallel: the limit a pipeline can reach;
  (b) tfinetune's training pipeline, with the default augmentation and with none;
  (c) `keras.utils.image_dataset_from_directory` followed by the same augmentation layers
      (mapped in parallel, prefetched), with and without `.cache()`;
and the peak resident memory of one uncached pass over the data in a fresh process.
Ratios are taken within the run, so they do not depend on this machine's speed.

    python benchmarks/input_pipeline.py --out benchmarks/results/input_pipeline.json

Datasets: `flower_photos_small/train` (large JPEGs) and the 10,000 JPEGs of
`cifar10_test.tar`, extracted to a temporary folder; both from ../shared/assets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from tfinetune.augment import build_augmentation
from tfinetune.data import make_dataset
from tfinetune.files import scan_image_folder
from tfinetune.images import decode_and_resize

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "datasets"
AUTOTUNE = tf.data.AUTOTUNE


def _rate(ds: tf.data.Dataset, epochs: int) -> list[float]:
    """Images per second of each full pass over `ds`."""
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for x, _ in ds:
            count += int(x.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates


def decode_limit(paths: list[str], size: int, batch: int) -> tf.data.Dataset:
    """(a) Read, decode and resize in parallel; nothing else."""
    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(
        lambda p: (decode_and_resize(tf.io.read_file(p), (size, size)), 0),
        num_parallel_calls=AUTOTUNE,
    )
    return ds.batch(batch).prefetch(AUTOTUNE)


def keras_loader(root: Path, size: int, batch: int, augment: bool, cache: bool):
    """(c) Keras's loader, then the same augmentation layers tfinetune's default uses."""
    ds = keras.utils.image_dataset_from_directory(
        root, image_size=(size, size), batch_size=batch, seed=1, verbose=False
    )
    if cache:
        ds = ds.cache()
    if augment:
        layers = keras.Sequential(build_augmentation("light", seed=1).layers)
        ds = ds.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def peak_rss_of_one_pass(root: Path, size: int, batch: int) -> float:
    """Peak resident memory (MB) of a fresh process making one uncached training pass."""
    code = (
        "import os, resource; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\n"
        "from tfinetune.files import scan_image_folder\n"
        "from tfinetune.data import make_dataset\n"
        f"files = scan_image_folder({str(root)!r})\n"
        f"ds = make_dataset(files, {size}, {batch}, training=True, cache=False, seed=1)\n"
        "n = sum(int(x.shape[0]) for x, _ in ds)\n"
        "print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    images, rss = out.stdout.split()[-2:]
    print(f"  one uncached pass over {images} images: peak RSS {float(rss):.0f} MB", flush=True)
    return float(rss)


def bench(name: str, root: Path, size: int, batch: int, epochs: int) -> dict:
    files = scan_image_folder(root)
    paths = files.paths
    print(f"\n{name}: {len(paths)} images at {size} px, batch {batch}", flush=True)
    rows = {
        "decode+resize limit": lambda: decode_limit(paths, size, batch),
        "tfinetune, no augmentation": lambda: make_dataset(
            files, size, batch, training=True, augment=None, seed=1
        ),
        "tfinetune, default (light) augmentation": lambda: make_dataset(
            files, size, batch, training=True, augment="light", seed=1
        ),
        "keras loader + same augmentation": lambda: keras_loader(root, size, batch, True, False),
        "keras loader + .cache() + same augmentation": lambda: keras_loader(
            root, size, batch, True, True
        ),
    }
    result = {"images": len(paths), "image_size": size, "batch_size": batch, "rows": {}}
    for label, make in rows.items():
        rates = _rate(make(), epochs)
        result["rows"][label] = rates
        print(f"  {label:<44}" + "".join(f"{r:9.0f}" for r in rates), flush=True)
    r = result["rows"]
    ours, keras_aug = (
        r["tfinetune, default (light) augmentation"],
        r["keras loader + same augmentation"],
    )
    plain, limit = r["tfinetune, no augmentation"], r["decode+resize limit"]
    result["ratios"] = {
        "tfinetune default aug / keras+aug (mean over epochs)": sum(ours) / sum(keras_aug),
        "tfinetune default aug / keras+aug, epoch 1": ours[0] / keras_aug[0],
        "tfinetune no aug / decode limit, epoch 1": plain[0] / limit[0],
        "tfinetune no aug / decode limit, epoch 2": plain[1] / limit[1],
    }
    for key, value in result["ratios"].items():
        print(f"  {key:<58}{value:6.2f}x")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--flowers-size", type=int, default=224)
    parser.add_argument("--cifar-size", type=int, default=96)
    parser.add_argument("--out", default="benchmarks/results/input_pipeline.json")
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count()}, "epochs": args.epochs, "datasets": {}}
    flowers = ASSETS / "flower_photos_small" / "train"
    results["datasets"]["flower_photos_small"] = bench(
        "flower_photos_small", flowers, args.flowers_size, args.batch_size, args.epochs
    )
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(ASSETS / "cifar10_test.tar") as tar:
            tar.extractall(tmp, filter="data")
        root = next(p.parent.parent for p in Path(tmp).rglob("*.jpg"))
        results["datasets"]["cifar10_test"] = bench(
            "cifar10_test", root, args.cifar_size, args.batch_size, args.epochs
        )
        rss = peak_rss_of_one_pass(root, args.cifar_size, args.batch_size)
        results["datasets"]["cifar10_test"]["peak_rss_mb_one_uncached_pass"] = rss
    results["parent_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
