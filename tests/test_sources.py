"""Every source (folder, CSV, rows, TFRecord, TFDS, NumPy) gives the same images and labels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfinetune.cli import main
from tfinetune.data.datasets import array_datasets, files_datasets, image_folder_datasets
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.records import convert_folder, read_tfrecords, tfrecord_datasets
from tfinetune.data.tables import files_from_rows, read_csv_files
from tfinetune.data.tfds import tfds_datasets

from conftest import files_pipeline

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of 6 lossless images each (PNG, BMP and GIF), of different sizes."""
    root = tmp_path_factory.mktemp("src") / "images"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(6):
            h, w = 20 + i, 30 - i
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., c] = 255  # something a model can learn
            fmt = ("PNG", "BMP", "PNG")[i % 3]
            Image.fromarray(pixels).save(root / name / f"{name}_{i}.{fmt.lower()}", fmt)
    return root


def _content(ds):
    """The (label, pixels) pairs of a dataset, in a canonical order."""
    pairs = []
    for x, y in ds:
        for image, label in zip(x.numpy(), y.numpy(), strict=True):
            pairs.append((label.tobytes(), image.astype("uint8").tobytes()))
    return sorted(pairs)


def test_folder_csv_rows_tfrecord_and_numpy_give_the_same_images_and_labels(folder, tmp_path):
    files = scan_image_folder(folder)
    options = {"image_size": 16, "batch_size": 5}
    reference = _content(files_pipeline(files, **options))
    assert len(reference) == 18

    rows = [
        (str(Path(p).relative_to(folder)), CLASSES[y])
        for p, y in zip(files.paths, files.labels, strict=True)
    ]
    csv_path = folder / "labels.csv"
    csv_path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    from_csv = read_csv_files(csv_path)
    assert from_csv.class_names == list(CLASSES) and from_csv.paths == files.paths
    assert _content(files_pipeline(from_csv, **options)) == reference
    from_rows = files_from_rows(rows, root=folder)
    assert _content(files_pipeline(from_rows, **options)) == reference

    records = tmp_path / "records"
    manifest = convert_folder(folder, records, val_split=0, shard_size=7)
    assert manifest["counts"] == {"train": 18} and len(manifest["shards"]["train"]) == 3
    shards = [records / s for s in manifest["shards"]["train"]]
    assert _content(_pipeline(read_tfrecords(shards, 3), 18)) == reference

    # NumPy arrays hold images of one size: the files of one size, decoded.
    same = [i for i, p in enumerate(files.paths) if Image.open(p).size == (30, 20)]
    x = np.stack([np.asarray(Image.open(files.paths[i]).convert("RGB")) for i in same])
    y = np.array([files.labels[i] for i in same])
    arrays = array_datasets(x, y, CLASSES, val_split=0, augment=None, **options)
    assert len(same) == 3 and arrays.class_names == list(CLASSES)
    assert _content(arrays.train) == _content(files_pipeline(files.subset(same), **options))


def _pipeline(source, count):
    from tfinetune.data.pipeline import build_pipeline

    return build_pipeline(source, count=count, image_size=16, batch_size=5)


def test_tfds_dataset_prepared_locally_gives_the_same_images(folder, tmp_path):
    import tensorflow_datasets.public_api as tfds_api

    class TfinetuneTestImages(tfds_api.core.GeneratorBasedBuilder):
        """Three classes of local PNG/BMP files, built offline for this test."""

        VERSION = tfds_api.core.Version("1.0.0")

        def _info(self):
            return tfds_api.core.DatasetInfo(
                builder=self,
                features=tfds_api.features.FeaturesDict(
                    {
                        "image": tfds_api.features.Image(),
                        "label": tfds_api.features.ClassLabel(names=list(CLASSES)),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for path in sorted(folder.rglob("*.*")):
                if path.suffix in (".png", ".bmp"):
                    yield (
                        path.name,
                        {
                            "image": np.asarray(Image.open(path).convert("RGB")),
                            "label": path.parent.name,
                        },
                    )

    builder = TfinetuneTestImages(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare()
    data = tfds_datasets(
        "tfinetune_test_images",
        data_dir=tmp_path / "tfds",
        splits=("train",),
        image_size=16,
        batch_size=5,
        augment=None,
    )
    assert data.class_names == list(CLASSES)
    files = scan_image_folder(folder)
    assert _content(data.train) == _content(files_pipeline(files, image_size=16, batch_size=5))
    with pytest.raises(FileNotFoundError, match="not prepared in"):
        tfds_datasets("tfinetune_test_images", data_dir=tmp_path / "elsewhere")


def test_multi_label_rows_become_multi_hot_targets_in_every_source(folder, tmp_path):
    files = scan_image_folder(folder)
    names = ["red", "green", "blue"]
    rows = []
    for i, path in enumerate(files.paths):
        tags = [names[files.labels[i]]] + (["blue"] if i % 4 == 0 else [])
        rows.append((path, " ".join(tags)))
    multi = files_from_rows(rows, class_names=names, label_delim=" ")
    assert multi.multi_label and multi.labels[0] == (0, 2)
    expected = np.zeros((18, 3), "float32")
    for i, (_, tags) in enumerate(rows):
        for tag in tags.split():
            expected[i, names.index(tag)] = 1
    y = np.concatenate([y.numpy() for _, y in files_pipeline(multi, 8, batch_size=7)])
    np.testing.assert_array_equal(y, expected)

    from tfinetune.data.records import write_tfrecords

    shards = write_tfrecords(multi, tmp_path / "multi")
    y_records = np.stack([y.numpy() for _, y in read_tfrecords(shards, 3, multi_label=True)])
    np.testing.assert_array_equal(y_records, expected)

    x = np.zeros((18, 8, 8, 3), "uint8")
    data = array_datasets(x, expected, names, val_split=0.25, image_size=8, augment=None)
    got = np.concatenate([y.numpy() for _, y in data.train] + [y.numpy() for _, y in data.val])
    assert data.multi_label and got.shape == (18, 3) and set(got.ravel().tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(np.sort(got.sum(axis=1)), np.sort(expected.sum(axis=1)))


def test_csv_errors_name_the_problem(folder, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx.png,cat\n")
    with pytest.raises(
        ValueError, match=r"no column 'path'; its header row names \['file', 'class'\]"
    ):
        read_csv_files(bad)
    listed = tmp_path / "listed.csv"
    good = next(folder.rglob("*.png"))
    listed.write_text(f"path,label\n{good},cat\n/no/such/file.png,dog\n")
    files = read_csv_files(listed)
    assert len(files) == 1 and [(b.path, b.reason) for b in files.bad_files] == [
        ("/no/such/file.png", "file not found")
    ]
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        read_csv_files(tmp_path / "missing.csv")


def test_three_way_splits_are_stratified_identical_per_seed_and_differ_across_seeds(folder):
    files = scan_image_folder(folder)
    a = files_datasets(files, val_split=1 / 3, test_split=1 / 6, seed=5, image_size=8)
    again = files_datasets(files, val_split=1 / 3, test_split=1 / 6, seed=5, image_size=8)
    other = files_datasets(files, val_split=1 / 3, test_split=1 / 6, seed=6, image_size=8)
    for part in ("train_files", "val_files", "test_files"):
        assert getattr(a, part).paths == getattr(again, part).paths
    assert sorted(a.val_files.labels) == [0, 0, 1, 1, 2, 2]
    assert sorted(a.test_files.labels) == [0, 1, 2]
    assert sorted(a.train_files.paths + a.val_files.paths + a.test_files.paths) == sorted(
        files.paths
    )
    assert other.val_files.paths != a.val_files.paths
    assert sum(len(y) for _, y in a.test) == 3


def test_tfrecord_datasets_keep_the_split_and_classes(folder, tmp_path):
    manifest = convert_folder(folder, tmp_path / "r", val_split=1 / 3, test_split=1 / 6, seed=5)
    assert manifest["counts"] == {"train": 9, "val": 6, "test": 3}
    data = tfrecord_datasets(tmp_path / "r", image_size=16, batch_size=4, augment=None)
    split = files_datasets(
        scan_image_folder(folder),
        val_split=1 / 3,
        test_split=1 / 6,
        seed=5,
        image_size=16,
        batch_size=4,
    )
    assert data.class_names == list(CLASSES)
    assert _content(data.val) == _content(split.val) and _content(data.test) == _content(split.test)
    with pytest.raises(FileExistsError, match="is not empty"):
        convert_folder(folder, tmp_path / "r")


def test_convert_command_writes_records_and_reports_counts(folder, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["convert", "--data", str(folder), "--out", str(out), "--val-split", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "train: 9" in printed and "val: 9" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        ".tfinetune",
        "dataset.json",
        "train-00000-of-00001.tfrecord",
        "val-00000-of-00001.tfrecord",
    ]
    assert main(["convert", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "Data folder not found" in capsys.readouterr().err


def test_class_weights_balance_an_imbalanced_folder(tmp_path):
    root = tmp_path / "imbalanced"
    for green, (name, n) in enumerate((("few", 2), ("many", 8))):
        (root / name).mkdir(parents=True)
        for i in range(n):  # every image different (identical ones across classes are refused)
            Image.new("RGB", (8, 8), (i * 20, green * 100, 0)).save(root / name / f"{i}.png")
    data = image_folder_datasets(root, image_size=8, val_split=0)
    weights = data.class_weights()
    assert weights == pytest.approx({0: 10 / (2 * 2), 1: 10 / (2 * 8)})
    assert weights[0] * 2 == pytest.approx(weights[1] * 8)


def test_fine_tune_passes_class_weights_to_keras(folder):

    from tfinetune import Stage, build_classifier, fine_tune

    data = image_folder_datasets(folder, image_size=16, batch_size=6, val_split=0, augment=None)
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=16)
    head = model.get_layer("head_predictions")
    before = head.kernel.numpy().copy()
    options = dict(stages=[Stage(1, 1, 0.1)], optimizer="sgd", ema_momentum=None, verbose=0)
    fine_tune(model, data.train, class_weight={0: 0.0, 1: 0.0, 2: 0.0}, **options)
    np.testing.assert_array_equal(head.kernel.numpy(), before)  # zero weight: no gradient
    fine_tune(model, data.train, class_weight=data.class_weights(), **options)
    assert not np.array_equal(head.kernel.numpy(), before)
