"""Text and sound recipes: frozen head against fine-tuned, with a no-pretraining baseline.

Two uses. `--tune` compares the `CANDIDATES` on held-out parts of the *training* data only
(a seeded, stratified 15 % per seed), which is how `tfinetune.runs.modalities.RECIPES` were
chosen. Without it, the chosen recipe runs through `tfinetune train`'s own code (`train_run`)
once per seed on the published split, beside its head stage alone (10 epochs, backbone
frozen) and, for sound, a Dense head on log-mel mean and standard deviation (YAMNet's own
front end, no pretrained network). Wall and CPU seconds per run are reported.

    python benchmarks/text_audio.py --tune --only text --seeds 1 2 3 \\
        --out benchmarks/results/text_tuning.json
    python benchmarks/text_audio.py --assets ../shared/assets --seeds 1 2 3 \\
        --out benchmarks/results/text_audio.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.data.audio import audio_dataset, scan_audio_folder
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.modalities import RECIPES
from tfinetune.runs.train import train_run
from tfinetune.training.recipe import Stage


def _head(epochs: int, rate: float) -> Stage:
    return Stage(epochs, 1, rate, "head")


def _tune(epochs: int, rate: float, mult: float, schedule: str = "constant") -> Stage:
    return Stage(epochs, 100, rate, "fine-tune", mult, schedule=schedule)


# name -> (stages, hidden units); the chosen ones are `RECIPES` (marked "recipe").
CANDIDATES = {
    "text": {
        "frozen, linear head, 10 epochs at 1e-2": ([_head(10, 1e-2)], []),
        "head 5 + all 10 at 1e-3, linear head": ([_head(5, 1e-2), _tune(10, 1e-3, 1.0)], []),
        "head 5 + all 10 at 1e-3, head 256": ([_head(5, 1e-3), _tune(10, 1e-3, 1.0)], [256]),
        "recipe: the above, warmup-cosine": (RECIPES["text"]["stages"], [256]),
        "the above, all 20 epochs": (
            [_head(5, 1e-3), _tune(20, 1e-3, 1.0, "warmup_cosine")],
            [256],
        ),
        "the above (10), hidden 512": (RECIPES["text"]["stages"], [512]),
        "head 10 + all 10, warmup-cosine, hidden 256": (
            [_head(10, 1e-3), _tune(10, 1e-3, 1.0, "warmup_cosine")],
            [256],
        ),
    },
    "audio": {
        "head 1 + all 3, warmup-cosine": (
            [_head(1, 3e-3), _tune(3, 3e-4, 3.0, "warmup_cosine")],
            [],
        ),
        "recipe: head 2 + all 6, warmup-cosine": (RECIPES["audio"]["stages"], []),
    },
}


def run_recipe(train: str, val: str, backbone: str, seed: int, stages, hidden: list) -> dict:
    """One `tfinetune train` run; without `val`, 15 % of `train` is held out (seeded)."""
    e = Experiment().with_values(
        {"data.train": train, "data.val": val, "data.val_split": 0.15, "seed": seed}
    )
    e = replace(
        e,
        stages=[replace(s) for s in stages],
        model=replace(e.model, backbone=backbone, hidden_units=list(hidden)),
    )
    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_run(e, Path(tmp) / "run", verbose=0)
    return {
        "accuracy": float(result.report.accuracy),
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }


def log_mel_baseline(fsdd: Path, yamnet: Path, seed: int) -> dict:
    """A Dense softmax head on each clip's log-mel mean and standard deviation (128 values)."""
    keras.utils.set_random_seed(seed)
    front = tf.saved_model.load(str(yamnet))
    wall = time.perf_counter()

    def features(folder, class_names=None):
        files = scan_audio_folder(folder, class_names)
        rows = []
        for waves, _ in audio_dataset(files, rate=16000, samples=15600, batch_size=64):
            for wave in waves:
                mel = front(wave)[2]
                rows.append(tf.concat([tf.reduce_mean(mel, 0), tf.math.reduce_std(mel, 0)], 0))
        return np.stack(rows), np.asarray(files.labels), files.class_names

    x, y, names = features(fsdd / "train")
    x_test, y_test, _ = features(fsdd / "test", names)
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(len(names), "softmax")]
    )
    model.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit((x - mean) / std, y, epochs=100, batch_size=64, verbose=0)
    accuracy = model.evaluate((x_test - mean) / std, y_test, verbose=0)[1]
    return {"accuracy": float(accuracy), "wall_s": round(time.perf_counter() - wall, 1)}


def summary(rows: list[dict]) -> str:
    """Mean and spread per method."""
    lines = ["| data | method | accuracy mean | sd | min | max | wall s per run |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in dict.fromkeys((r["data"], r["method"]) for r in rows):
        acc = [r["accuracy"] for r in rows if (r["data"], r["method"]) == key]
        wall = [r["wall_s"] for r in rows if (r["data"], r["method"]) == key]
        lines.append(
            f"| {key[0]} | {key[1]} | {np.mean(acc):.4f} | {np.std(acc):.4f} | {min(acc):.4f} "
            f"| {max(acc):.4f} | {np.median(wall):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="../shared/assets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only", choices=("text", "audio"))
    parser.add_argument("--tune", action="store_true", help="compare CANDIDATES on train only")
    parser.add_argument("--candidates", nargs="*", help="only these CANDIDATES (their names)")
    parser.add_argument("--out", default="benchmarks/results/text_audio.json")
    args = parser.parse_args()
    assets = Path(args.assets)
    text, fsdd = assets / "datasets" / "text", assets / "datasets" / "fsdd"
    glove, yamnet = assets / "hub" / "glove_50d_5k_text_embedding", assets / "hub" / "yamnet"
    jobs = []
    if args.only != "audio":
        jobs.append(("AG News val", str(text / "ag_news_train.csv"),
                     str(text / "ag_news_val.csv"), f"hub:{glove}"))  # fmt: skip
    if args.only != "text":
        jobs.append(("FSDD test", str(fsdd / "train"), str(fsdd / "test"), f"hub:{yamnet}"))
    rows = []
    for seed in args.seeds:
        for data, train, val, backbone in jobs:
            kind = "text" if train.endswith(".csv") else "audio"
            recipe = RECIPES[kind]
            if args.tune:  # held-out training data only
                methods = [(n, c) for n, c in CANDIDATES[kind].items()
                           if not args.candidates or n in args.candidates]  # fmt: skip
                data, val = f"{data.split()[0]} 15 % of train", ""
            else:
                head = replace(recipe["stages"][0], epochs=10)  # a head trained to its plateau
                methods = {"frozen backbone, head 10 epochs": ([head], recipe["hidden_units"]),
                           "fine-tuned (recipe)": (recipe["stages"], recipe["hidden_units"])
                           }.items()  # fmt: skip
            for method, (stages, hidden) in methods:
                row = {"data": data, "method": method, "seed": seed,
                       **run_recipe(train, val, backbone, seed, stages, hidden)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.only != "text" and not args.tune:
            row = {"data": "FSDD test", "method": "log-mel mean/std + Dense (no pretraining)",
                   "seed": seed, **log_mel_baseline(fsdd, yamnet, seed)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = summary(rows)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
