"""CPU seconds per image of the training input pipeline alone, as `tfinetune train` builds it.

The same 32 px JPEGs as `benchmarks/scale.py` (written by it), as a folder and as shards,
through `build_pipeline` for training with the memory cache on or off (off is what a
1M-image run gets: it does not fit in 2 GiB) and with the decode log (`DecodeLog`) on or off.
No model: each configuration iterates 36 batches of 256 and measures steps 6 to 36
(`time.process_time`, every thread), configurations interleaved and repeated, medians
reported. Op determinism stays off here, as in a script that does not turn it on; training
turns it on on a CPU, under which a stateful step serialises the whole pipeline
(`benchmarks/decode_log.py`), which this benchmark therefore does not see.

    python benchmarks/pipeline_cpu.py --size 20000 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scale import write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "tfinetune_scale"))
    args = parser.parse_args()

    from tfinetune.data.datasets import file_source
    from tfinetune.data.decode_log import DecodeLog
    from tfinetune.data.folders import scan_image_folder
    from tfinetune.data.pipeline import build_pipeline
    from tfinetune.data.shards import _shard_index, _shard_split, shuffled_records

    root, n = Path(args.root), args.size
    write_dataset(root, n)
    files = scan_image_folder(root / f"folder_{n}")
    shards, manifest = _shard_split(str(root / f"shards_{n}"), "train")
    names = list(manifest["class_names"])
    index = _shard_index([str(p) for p in shards], names)
    size = sum(p.stat().st_size for p in shards)

    def dataset(source: str, cache: bool, log: bool):
        if source == "folder":
            (src, count, encoded), reads = file_source(files, shuffled=True, seed=1), None
        else:
            src, count, encoded = shuffled_records(index, len(names), size, 1), len(index), size
            reads = False
        return build_pipeline(
            src, count=count, training=True, encoded_bytes=encoded, num_classes=len(names),
            decode_log=DecodeLog(count) if log else None, reads_files=reads, image_size=32,
            batch_size=256, augment="none", cache=cache, seed=1,
        )  # fmt: skip

    def measure(ds, first: int = 6, steps: int = 36) -> tuple[float, float]:
        batches = iter(ds)
        for _ in range(first):
            next(batches)
        cpu, wall, images = time.process_time(), time.perf_counter(), 0
        for _ in range(steps - first):
            images += int(next(batches)[0].shape[0])
        return (time.process_time() - cpu) / images * 1e3, images / (time.perf_counter() - wall)

    results: dict[str, list] = {}
    flags = (True, False)
    configs = [(s, c, g) for s in ("folder", "shards") for c in flags for g in flags]
    for _ in range(args.repeats):
        for config in configs:
            cpu_ms, per_second = measure(dataset(*config))
            name = f"{config[0]} cache={config[1]} log={config[2]}"
            results.setdefault(name, []).append((cpu_ms, per_second))
            print(f"{name}: {cpu_ms:.3f} ms CPU/image, {per_second:.0f} images/s", flush=True)
    print("medians:")
    for name, rows in results.items():
        cpu_ms = statistics.median(r[0] for r in rows)
        print(f"  {name}: {cpu_ms:.3f} ms CPU/image, {statistics.median(r[1] for r in rows):.0f}/s")


if __name__ == "__main__":
    main()
