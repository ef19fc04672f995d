"""The cost of one decode for every route: full JPEG decodes against DCT-scaled ones.

Until December 2026 the pipelines decoded a JPEG at least twice the model's input size at
1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) while `serve_images`, which receives pixels,
resized full-size images: the two routes gave different pixels for large photos. Now every
route decodes fully and resizes with the same function. This script measures what that costs,
with the old decoder as the baseline in the same run: each dataset is decoded and resized by
both, interleaved, `--repeats` times; the medians of wall and CPU milliseconds per image are
reported, and the ratio new / old.

    python benchmarks/decode.py --out benchmarks/results/decode.json

Datasets (from ../shared/assets): `hymenoptera_data/val` at 96 and 160 px (most photos are
about 500x375, so the old decoder shrank them 2x while decoding), `flower_photos_small/train`
at 224 px (photos of about 320x240: both decode fully), and 12 hymenoptera photos upscaled to
4000x3000 phone-camera JPEGs at 224 px (the old decoder shrank them 8x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from tfinetune.data.headers import image_dimensions
from tfinetune.data.images import decode_and_resize, is_jpeg, resize_image

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "datasets"


def dct_scaled(encoded: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """The decoder the pipelines used before (the baseline): JPEGs at least 2, 4 or 8 times
    the target size decode at 1/2, 1/4 or 1/8 scale, then resize."""
    dims = image_dimensions(encoded)
    factor = tf.minimum(dims[0] // size[0], dims[1] // size[1])
    scale = tf.cast(factor >= 2, tf.int32) + tf.cast(factor >= 4, tf.int32)
    scale += tf.cast(factor >= 8, tf.int32)
    branches = [
        (lambda r=ratio: tf.io.decode_jpeg(encoded, channels=3, ratio=r)) for ratio in (1, 2, 4, 8)
    ]
    branches.append(lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    image = tf.switch_case(tf.where(is_jpeg(encoded), scale, len(branches) - 1), branches)
    image.set_shape([None, None, 3])
    return resize_image(image, size)


def one_pass(paths: list[str], size: int, decode) -> tuple[float, float]:
    """Wall and CPU milliseconds per image of decoding and resizing `paths` in parallel."""
    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(lambda p: decode(tf.io.read_file(p), (size, size)), tf.data.AUTOTUNE)
    ds = ds.batch(32).prefetch(tf.data.AUTOTUNE)
    start, cpu = time.perf_counter(), time.process_time()
    count = sum(int(x.shape[0]) for x in ds)
    return (
        1000 * (time.perf_counter() - start) / count,
        1000 * (time.process_time() - cpu) / count,
    )


def phone_photos(folder: Path, count: int = 12) -> list[str]:
    """Real photos upscaled to 4000x3000 JPEGs (quality 90), written into `folder`."""
    sources = sorted((ASSETS / "hymenoptera_data" / "val" / "bees").glob("*.jpg"))[:count]
    paths = []
    for i, source in enumerate(sources):
        image = tf.io.decode_jpeg(tf.io.read_file(str(source)), channels=3)
        big = tf.cast(tf.clip_by_value(tf.image.resize(image, (3000, 4000)), 0, 255), tf.uint8)
        path = folder / f"phone_{i}.jpg"
        tf.io.write_file(str(path), tf.io.encode_jpeg(big, quality=90))
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    hymenoptera = sorted(str(p) for p in (ASSETS / "hymenoptera_data" / "val").glob("*/*.jpg"))
    flowers = sorted(str(p) for p in (ASSETS / "flower_photos_small" / "train").glob("*/*.jpg"))
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        cases = [
            ("hymenoptera val, 96 px", hymenoptera, 96),
            ("hymenoptera val, 160 px", hymenoptera, 160),
            ("flowers train, 224 px", flowers, 224),
            ("4000x3000 photos, 224 px", phone_photos(Path(scratch)), 224),
        ]
        for name, paths, size in cases:
            timings = {"old (DCT-scaled)": [], "new (full decode)": []}
            one_pass(paths, size, decode_and_resize)  # warm up both graphs and the page cache
            one_pass(paths, size, dct_scaled)
            for _ in range(args.repeats):  # interleaved
                timings["new (full decode)"].append(one_pass(paths, size, decode_and_resize))
                timings["old (DCT-scaled)"].append(one_pass(paths, size, dct_scaled))
            row = {"case": name, "images": len(paths)}
            for label, runs in timings.items():
                row[label] = {
                    "wall_ms": statistics.median(w for w, _ in runs),
                    "cpu_ms": statistics.median(c for _, c in runs),
                }
            old, new = row["old (DCT-scaled)"], row["new (full decode)"]
            row["new/old wall"] = new["wall_ms"] / old["wall_ms"]
            row["new/old cpu"] = new["cpu_ms"] / old["cpu_ms"]
            results.append(row)
            print(
                f"{name:<26} {len(paths):>4} images  old {old['wall_ms']:6.2f} ms "
                f"({old['cpu_ms']:6.2f} CPU)  new {new['wall_ms']:6.2f} ms "
                f"({new['cpu_ms']:6.2f} CPU)  new/old wall {row['new/old wall']:.2f}x, "
                f"CPU {row['new/old cpu']:.2f}x",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"repeats": args.repeats, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
