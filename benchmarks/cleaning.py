"""What `tfinetune clean` finds in corrupted real data, and what leaving it out recovers.

Detection (#36's first bar), on `flower_photos_small`: 5 % of the training labels flipped at
random (each file moved to another class folder), and 10 validation photos copied into
training resized (40-90 %) and re-encoded (JPEG quality 60-90), so not byte-identical. A
second copy of the training set has 10 within-split copies and 10 off-topic photos (ants from
hymenoptera, CIFAR-10 vehicles) planted instead, for the duplicate and outlier detectors. Precision
and recall per issue type, and the time taken. Groups that are near-duplicates already in
the data (`KNOWN_DUPLICATES`, each checked by eye) count as found, not as false.

Recovery (#36's second bar), on `flower_photos_tune` (a seeded 80/20 split per class): the
same corruption of its training part; `tfinetune train` on the clean, the corrupted, and
the corrupted data with `--exclude` of its report; validation accuracy over seeds. The
recipe is the head stage only (frozen MobileNetV2 at 160 px), to fit this CPU.

The thresholds and the label head were chosen on `flower_photos_tune` (`thresholds`, and
`choice` for the outlier threshold), never on the data reported.

    python benchmarks/cleaning.py --out benchmarks/results/cleaning.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.cleaning import find_data_issues
from tfinetune.cli import main

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
WEIGHTS = ASSETS / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
EXTENSIONS = (".jpg", ".jpeg", ".png")
# Near-duplicates already in flower_photos_small, each looked at by eye (the same photo,
# recoloured, re-cropped or re-encoded): the first three span train and val (real leaks),
# the others lie within train. A group made of these is found, not false.
KNOWN_DUPLICATES = (
    ("10466290366_cc72e33532", "10994032453_ac7f8d9e2e"),  # daisy
    ("12407768513_3440238148_n", "12406418663_af20dc225f_n"),  # roses, recoloured
    ("14925398301_55a180f919_n", "14741866338_bdc8bfc8d5_n", "14925398441_107f3e0304_n"),
    ("10993710036_2033222c91", "10993818044_4c19b86c82"),  # daisy
    ("14889392928_9742aed45b_m", "15066430311_fb57fa92b0_m"),  # sunflowers
    ("15069459615_7e0fd61914_n", "15072973261_73e2912ef2_n"),  # sunflowers
    ("13279526615_a3b0059bec", "13342823005_16d3df58df_n"),  # roses, one in grey
    ("12916135413_dafcf3089e_n", "12916441224_2ed63596f8_n"),  # tulips
    ("10164073235_f29931d91e", "10163955604_ae0b830975_n"),  # tulips
)


def _known(group: set[str]) -> bool:
    stems = {Path(p).stem for p in group}
    return any(len(stems & set(known)) >= 2 for known in KNOWN_DUPLICATES)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)


def resized_copy(source: Path, target: Path, rng: np.random.Generator) -> None:
    """Write `source` resized to 40-90 % and re-encoded as JPEG (quality 60-90) to `target`."""
    image = tf.io.decode_image(tf.io.read_file(str(source)), channels=3, expand_animations=False)
    size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * rng.uniform(0.4, 0.9), tf.int32)
    small = tf.cast(tf.round(tf.image.resize(image, size, antialias=True)), tf.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(tf.io.encode_jpeg(small, quality=int(rng.integers(60, 91))).numpy())


def corrupt(train: Path, val: Path, out: Path, seed: int, flip: float = 0.05, leaks: int = 10):
    """Copy `train` to `out` with `flip` of its labels flipped and `leaks` of `val` copied in.

    Returns:
        `(flipped, leaked)`: the real paths of the flipped files in `out`, and
        `{copy in out: original in val}` for the leaks.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    files = _images(train)
    moved = set(rng.choice(len(files), round(flip * len(files)), replace=False).tolist())
    flipped = []
    for i, f in enumerate(files):
        name = f.parent.name
        if i in moved:
            name = rng.choice([c for c in classes if c != f.parent.name])
        target = out / name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, target)
        if i in moved:
            flipped.append(os.path.realpath(target))
    held = _images(val)
    leaked = {}
    for j in rng.choice(len(held), leaks, replace=False):
        target = out / held[j].parent.name / f"leak_{held[j].stem}.jpg"
        resized_copy(held[j], target, rng)
        leaked[os.path.realpath(target)] = os.path.realpath(held[j])
    return flipped, leaked


def off_topic_photos(root: Path, n: int, rng: np.random.Generator) -> list[Path]:
    """`n` photos that are not flowers: half ants (hymenoptera; bees sit on flowers too
    often), half CIFAR-10 vehicles (airplane, automobile, ship, truck; 32x32)."""
    ants = _images(ASSETS / "datasets" / "hymenoptera_data" / "val" / "ants")
    ants = [p for p in ants if p.suffix.lower() == ".jpg"]
    picked = [ants[j] for j in rng.choice(len(ants), n // 2, replace=False)]
    vehicles = ("airplane", "automobile", "ship", "truck")
    with tarfile.open(ASSETS / "datasets" / "cifar10_test.tar") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.split("/")[1] in vehicles]
        chosen = [members[j] for j in rng.choice(len(members), n - n // 2, replace=False)]
        tar.extractall(root / "cifar", members=chosen, filter="data")
    return picked + [root / "cifar" / m.name for m in chosen]


def plant_duplicates_and_outliers(train: Path, out: Path, seed: int, n: int = 10):
    """Copy `train` to `out` with `n` resized copies of its own photos and `n` off-topic
    photos (`off_topic_photos`) planted across the classes."""
    rng = np.random.default_rng(seed)
    shutil.copytree(train, out, symlinks=False)
    files = _images(train)
    copies = []
    for j in rng.choice(len(files), n, replace=False):
        target = out / files[j].parent.name / f"copy_{files[j].stem}.jpg"
        resized_copy(files[j], target, rng)
        original = out / files[j].relative_to(train)
        copies.append((os.path.realpath(target), os.path.realpath(original)))
    classes = sorted(p.name for p in out.iterdir() if p.is_dir())
    outliers = []
    for k, photo in enumerate(off_topic_photos(out.parent / f"{out.name}_sources", n, rng)):
        target = out / classes[int(rng.integers(len(classes)))] / f"offtopic{k}_{photo.name}"
        shutil.copy(photo, target)
        outliers.append(os.path.realpath(target))
    return copies, outliers


def threshold_choice(root: Path, seed: int) -> dict:
    """How the similarity thresholds and the label head were chosen, on flower_photos_tune:
    hash bits and embedding cosine of 30 resized, re-encoded copies against the nearest
    distinct photo; and the share of 25 in-memory label flips ranked in the lowest 5 % for
    each regularisation `C` of the logistic regression."""
    from cleanlab.count import estimate_cv_predicted_probabilities
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression

    from tfinetune.cleaning.features import feature_model, hashes_and_embeddings
    from tfinetune.data.hashes import hamming, popcount

    tune = ASSETS / "datasets" / "flower_photos_tune"
    found = find_data_issues(tune, weights=WEIGHTS, seed=seed, verbose=0)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(found.paths), 30, replace=False)
    for k, i in enumerate(picked):
        resized_copy(Path(found.paths[i]), root / f"copies{seed}" / f"{k}.jpg", rng)
    copies = [str(root / f"copies{seed}" / f"{k}.jpg") for k in range(30)]
    hashes, vectors, _ = hashes_and_embeddings(
        copies, feature_model("mobilenet_v2", WEIGHTS), 32, 0
    )
    mine = hashes_and_embeddings(found.paths, feature_model("mobilenet_v2", WEIGHTS), 32, 0)[0]
    bits = hamming(mine, mine) + np.eye(len(mine), dtype=int) * 64
    cosine = found.embeddings @ found.embeddings.T - np.eye(len(mine)) * 2
    head = {}
    for c in (1.0, 10.0, 100.0):
        recalls = []
        for flip_seed in range(3):
            r = np.random.default_rng(100 + flip_seed)
            flips = r.choice(len(found.labels), 25, replace=False)
            noisy = found.labels.copy()
            noisy[flips] = (noisy[flips] + r.integers(1, 5, 25)) % 5
            p = estimate_cv_predicted_probabilities(
                found.embeddings, noisy, clf=LogisticRegression(C=c, max_iter=2000), seed=0
            )
            lowest = np.argsort(get_label_quality_scores(noisy, p))[:25]
            recalls.append(len(set(lowest.tolist()) & set(flips.tolist())) / 25)
        head[str(c)] = recalls
    return {
        "seed": seed,
        "copy_bits": sorted(popcount(hashes ^ mine[picked]).tolist()),
        "copy_cosine": sorted(
            round(float(x), 3) for x in (vectors * found.embeddings[picked]).sum(1)
        ),
        "distinct_min_bits": int(bits.min()),
        "distinct_max_cosine": round(float(cosine.max()), 3),
        "label_head_top5_recall": head,
    }


def outlier_choice(root: Path, seed: int) -> dict:
    """How `OUTLIER_Z` was chosen: flower_photos_tune with 20 off-topic photos planted;
    precision and recall of the outlier flags at each candidate threshold."""
    from tfinetune.cleaning import detect

    planted_root = root / f"tune_planted{seed}"
    tune = ASSETS / "datasets" / "flower_photos_tune"
    _, outliers = plant_duplicates_and_outliers(tune, planted_root, seed, n=20)
    found = find_data_issues(planted_root, weights=WEIGHTS, seed=seed, verbose=0)
    z, _ = detect.outlier_scores(found.embeddings, found.labels)
    planted = np.array([os.path.realpath(p) in set(outliers) for p in found.paths])
    rows = {}
    for threshold in (1.5, 2.0, 2.5, 3.0, 3.5):
        flagged = z > threshold
        hit = int((flagged & planted).sum())
        precision, recall = hit / max(int(flagged.sum()), 1), hit / int(planted.sum())
        f1 = 2 * precision * recall / (precision + recall) if hit else 0.0
        rows[str(threshold)] = {"flagged": int(flagged.sum()), "precision": precision,
                                "recall": recall, "f1": f1}  # fmt: skip
    return {"seed": seed, "thresholds": rows}


def _precision_recall(found: set, planted: set) -> dict:
    hit = len(found & planted)
    return {"found": len(found), "planted": len(planted), "true": hit,
            "precision": hit / len(found) if found else None,
            "recall": hit / len(planted) if planted else None}  # fmt: skip


def detection(root: Path, seed: int) -> dict:
    """The detectors on corrupted `flower_photos_small`: precision, recall and time."""
    small = ASSETS / "datasets" / "flower_photos_small"
    flipped, leaked = corrupt(small / "train", small / "val", root / f"corrupt{seed}", seed)
    cpu, wall = time.process_time(), time.perf_counter()
    found = find_data_issues(root / f"corrupt{seed}", small / "val", root / f"report{seed}",
                             weights=WEIGHTS, seed=seed, verbose=0)  # fmt: skip
    seconds = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    # A leak group counts as found when it holds a planted copy and its original.
    groups = [{os.path.realpath(found.paths[i]) for i in g.members}
              for g in found.groups if g.leak]  # fmt: skip
    true_groups = [g for g in groups if any(c in g and o in g for c, o in leaked.items())]
    known = [g for g in groups if g not in true_groups and _known(g)]
    leaks = {"planted": len(leaked), "found_groups": len(groups), "true_groups": len(true_groups),
             "known_groups": len(known),
             "false_groups": len(groups) - len(true_groups) - len(known),
             "recall": sum(any(c in g and o in g for g in groups) for c, o in leaked.items())
             / len(leaked)}  # fmt: skip
    leaks["precision"] = (len(true_groups) + len(known)) / len(groups) if groups else None
    # Label issues: the ranking of every training image by label quality, and the flags.
    ranked = [r["path"] for r in found.of("label_issue")]
    train_rows = found.counts["train"]
    top = set(_quality_ranking(found)[: round(0.05 * train_rows)])
    labels = _precision_recall(set(ranked), set(flipped))
    labels["top5_recall"] = len(top & set(flipped)) / len(flipped)
    return {"seed": seed, **seconds, "leak": leaks, "label_issue": labels,
            "images": found.counts}  # fmt: skip


def _quality_ranking(found) -> list[str]:
    """Training images by label quality, lowest first (the label-issue list, then the rest)."""
    scores = found.label_quality
    order = np.argsort(scores, kind="stable")
    return [os.path.realpath(found.paths[i]) for i in order if found.splits[i] == "train"]


def duplicates_and_outliers(root: Path, seed: int) -> dict:
    small = ASSETS / "datasets" / "flower_photos_small"
    copies, outliers = plant_duplicates_and_outliers(small / "train", root / f"planted{seed}", seed)
    found = find_data_issues(root / f"planted{seed}", weights=WEIGHTS, seed=seed, verbose=0)
    groups = [{os.path.realpath(found.paths[i]) for i in g.members} for g in found.groups]
    true_groups = [g for g in groups if any(c in g and o in g for c, o in copies)]
    known = [g for g in groups if g not in true_groups and _known(g)]
    false = len(groups) - len(true_groups) - len(known)
    dup = {"planted": len(copies), "found_groups": len(groups), "true_groups": len(true_groups),
           "known_groups": len(known), "false_groups": false,
           "recall": sum(any(c in g and o in g for g in groups) for c, o in copies) / len(copies),
           "precision": 1 - false / len(groups) if groups else None}  # fmt: skip
    flagged = {r["path"] for r in found.of("outlier")}
    return {"seed": seed, "duplicate": dup, "outlier": _precision_recall(flagged, set(outliers))}


def _train(data: Path, val: Path, out: Path, seed: int, exclude: Path | None = None) -> float:
    args = ["train", "--data", str(data), "--val-data", str(val), "--out", str(out),
            "--weights", str(WEIGHTS), "--image-size", "160", "--freeze-epochs", "5",
            "--epochs", "0", "--seed", str(seed), "--quiet"]  # fmt: skip
    if exclude:
        args += ["--exclude", str(exclude)]
    assert main(args) == 0, out
    return json.loads((out / "metrics.json").read_text())["accuracy"]


def split_tune(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """flower_photos_tune as 80 % training and 20 % validation per class (seeded)."""
    rng = np.random.default_rng(seed)
    tune = ASSETS / "datasets" / "flower_photos_tune"
    for folder in sorted(p for p in tune.iterdir() if p.is_dir()):
        files = _images(folder)
        held = set(rng.choice(len(files), len(files) // 5, replace=False).tolist())
        for i, f in enumerate(files):
            target = root / ("val" if i in held else "train") / folder.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    return root / "train", root / "val"


def _recovery(train: Path, val: Path, root: Path, name: str, seed: int) -> dict:
    """Validation accuracy: clean, corrupted, and corrupted with --exclude of its report."""
    bad = root / f"{name}_corrupt{seed}"
    if not bad.exists():
        corrupt(train, val, bad, seed)
    report = root / f"{name}_report{seed}"
    find_data_issues(bad, val, report, weights=WEIGHTS, seed=seed, verbose=0)
    return {
        "seed": seed,
        "clean": _train(train, val, root / f"{name}_clean{seed}", seed),
        "corrupted": _train(bad, val, root / f"{name}_bad{seed}", seed),
        "excluded": _train(bad, val, root / f"{name}_excl{seed}", seed, report / "issues.csv"),
    }


def recovery(root: Path, seed: int) -> dict:
    """The recovery on flower_photos_tune (80/20 split), as #36 asks."""
    tune = root / "tune"
    train, val = (tune / "train", tune / "val") if tune.exists() else split_tune(tune)
    return _recovery(train, val, root, "tune", seed)


def recovery_small(root: Path, seed: int) -> dict:
    """The same on flower_photos_small, which no threshold or head choice saw."""
    small = ASSETS / "datasets" / "flower_photos_small"
    return _recovery(small / "train", small / "val", root, "small", seed)


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cleaning.json"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parts = ("thresholds", "choice", "detection", "planted", "recovery", "recovery_small")
    parser.add_argument("--skip", nargs="*", default=[], choices=parts)
    args = parser.parse_args(argv)
    # Parts run separately are merged into the same file.
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = {"thresholds": threshold_choice, "choice": outlier_choice, "detection": detection,
                "planted": duplicates_and_outliers, "recovery": recovery,
                "recovery_small": recovery_small}  # fmt: skip
        for part, run in runs.items():
            if part in args.skip:
                continue
            results[part] = []
            for seed in args.seeds:
                results[part].append(run(root, seed))
                print(json.dumps(results[part][-1]), flush=True)
                args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main_()
