"""Data at scale: header scans, files that fail while training, shards and TFDS from the CLI."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfinetune.cli import main
from tfinetune.data.files import AUTO_DECODE_LIMIT, check_files, scan_decoder
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.headers import check_header
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.runs.folder import read_manifest

TINY = ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "32"]
ONE_EPOCH = ["--epochs", "0", "--freeze-epochs", "1", "--batch-size", "4"]


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG whose header (format, size) is sound and whose image data is cut in half."""
    pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    encoded = tf.io.encode_jpeg(pixels).numpy()
    path.write_bytes(encoded[: len(encoded) // 2])
    return path


def test_auto_scan_decodes_small_inputs_and_reads_headers_of_large_ones():
    assert scan_decoder("auto", AUTO_DECODE_LIMIT).__name__ == "decode_image"
    assert scan_decoder("auto", AUTO_DECODE_LIMIT + 1).__name__ == "check_header"
    assert scan_decoder("decode", 10**7).__name__ == "decode_image"
    with pytest.raises(ValueError, match="Unknown scan check 'quick'"):
        scan_decoder("quick", 1)


def test_header_scan_passes_sound_headers_and_refuses_the_rest(tmp_path, monkeypatch):
    broken = _truncated_jpeg(tmp_path / "broken.jpg")
    page = tmp_path / "page.jpg"
    page.write_text("<html><body>not a photo</body></html>")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(tf.io.encode_png(tf.zeros([200, 300, 1], tf.uint8)).numpy())
    monkeypatch.setenv("TFINETUNE_MAX_PIXELS", "10000")
    paths = [str(broken), str(page), str(bomb)]
    bad, hashes = check_files(paths, decode=check_header)
    reasons = {Path(b.path).name: b.reason for b in bad}
    assert hashes is None and "broken.jpg" not in reasons  # its header is sound
    assert "not a JPEG, PNG, GIF, BMP or WebP image" in reasons["page.jpg"]
    assert "more than 10,000 pixels" in reasons["bomb.png"]
    # A full decode finds the cut-short JPEG.
    decoded, _ = check_files(paths[:1])
    assert [Path(b.path).name for b in decoded] == ["broken.jpg"]


def test_a_corrupt_jpeg_is_skipped_while_training_and_named_in_the_manifest(tmp_path, capsys):
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 6, size=32)
    val = write_shapes_folder(tmp_path / "val", ["ring", "star"], 2, size=32, seed=1)
    _truncated_jpeg(data / "star" / "cut_short.jpg")
    _truncated_jpeg(val / "ring" / "val_cut_short.jpg")
    # The header scan lets them through: they are found while training and evaluating.
    assert "cut_short.jpg" in {Path(p).name for p in scan_image_folder(data, check="header").paths}
    args = ["train", "--data", str(data), "--val-data", str(val), "--scan", "header"]
    assert main([*args, *TINY, *ONE_EPOCH, "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "Epoch 1: skipped 1 training file(s) that failed to decode (" in printed
    rows = read_manifest(tmp_path / "run")
    named = {Path(r["path"]).name: r for r in rows}
    assert named["cut_short.jpg"]["status"] == "skipped"
    assert named["cut_short.jpg"]["split"] == "train" and named["cut_short.jpg"]["label"] == "star"
    assert named["cut_short.jpg"]["reason"].startswith(
        "failed to decode while training (epoch 1): cannot be decoded"
    )
    assert "Skipped 1 validation file(s) that failed to decode (" in printed
    assert named["val_cut_short.jpg"]["status"] == "skipped"
    assert named["val_cut_short.jpg"]["split"] == "val"
    assert named["val_cut_short.jpg"]["reason"].startswith(
        "failed to decode while evaluating: cannot be decoded"
    )
    # Every other file is used; nothing else is missing.
    used = [r for r in rows if r["status"] == "used"]
    assert len(used) == 12 + 4 and len(rows) == 18
    card = (tmp_path / "run" / "README.md").read_text()
    assert "failed to decode while training: 1, while evaluating: 1" in card
    # The report still knows each validation prediction's file (the failed one left out).
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_examples"] == 4
    losses = json.loads((tmp_path / "run" / "top_losses.json").read_text())
    assert {Path(x["path"]).parent.parent for x in losses} == {val}
    assert "val_cut_short.jpg" not in {Path(x["path"]).name for x in losses}


def _record(encoded: bytes, label: int) -> bytes:
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_train_from_convert_shards_accounts_for_every_record(tmp_path, capsys):
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 8, size=32)
    records = tmp_path / "records"
    convert = ["convert", "--data", str(data), "--out", str(records), "--val-split", "0.25"]
    assert main([*convert, "--shard-size", "5"]) == 0
    # One more training shard, beside convert's, holding a record whose image is cut short.
    cut = _truncated_jpeg(tmp_path / "cut.jpg").read_bytes()
    with tf.io.TFRecordWriter(str(records / "train-extra.tfrecord")) as writer:
        writer.write(_record((data / "ring" / "ring_0000.png").read_bytes(), 0))
        writer.write(_record(cut, 1))
    with tf.io.TFRecordWriter(str(records / "val-extra.tfrecord")) as writer:  # first, cut
        writer.write(_record(cut, 0))
        writer.write(_record((data / "star" / "star_0000.png").read_bytes(), 1))
    capsys.readouterr()

    train = ["train", "--data", str(records / "train-*.tfrecord")]
    train += ["--val-data", str(records / "val-*.tfrecord"), *TINY, *ONE_EPOCH]
    assert main([*train, "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "train: 14 records, val: 6 records" in printed
    assert "Epoch 1: skipped 1 training file(s) that failed to decode (" in printed
    assert "Skipped 1 validation file(s) that failed to decode (" in printed
    rows = read_manifest(tmp_path / "run")
    shards = sorted(records.glob("*.tfrecord"))
    expected = set()
    for shard in shards:
        count = sum(1 for _ in tf.data.TFRecordDataset(str(shard)))
        expected |= {f"{shard}#{i}" for i in range(count)}
    assert {r["path"] for r in rows} == expected and len(rows) == 20  # every record, once
    bad = [r for r in rows if r["status"] != "used"]
    assert [(r["path"], r["split"], r["label"]) for r in bad] == [
        (f"{records / 'train-extra.tfrecord'}#1", "train", "star"),
        (f"{records / 'val-extra.tfrecord'}#0", "val", "ring"),
    ]
    assert bad[0]["reason"].startswith("failed to decode while training (epoch 1): cannot be")
    assert bad[1]["reason"].startswith("failed to decode while evaluating: cannot be decoded")
    assert {r["split"] for r in rows if "val-" in r["path"]} == {"val"}
    # The SavedModel was checked on validation records that decode, the cut one left out.
    assert (tmp_path / "run" / "saved_model" / "1" / "saved_model.pb").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_examples"] == 5
    # export without --data verifies on the run's validation records that decode.
    models = tmp_path / "models" / "shapes"
    assert main(["export", str(tmp_path / "run"), "--out", str(models)]) == 0
    assert "on 5 images" in capsys.readouterr().out
    assert (models / "1" / "saved_model.pb").is_file()

    # The convert folder itself: its train and val shards (the extra shard is not listed).
    assert (
        main(["train", "--data", str(records), *TINY, *ONE_EPOCH, "--out", str(tmp_path / "r2")])
        == 0
    )
    rows = read_manifest(tmp_path / "r2")
    assert len(rows) == 16 and {r["status"] for r in rows} == {"used"}
    assert sum(r["split"] == "val" for r in rows) == 4


def test_a_shard_glob_without_dataset_json_or_matches_is_one_line(tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")]
    assert main(["train", "--data", str(tmp_path / "none-*.tfrecord"), *TINY, *out]) == 2
    assert "No shard matches" in capsys.readouterr().err
    (tmp_path / "x-0.tfrecord").write_bytes(b"")
    assert main(["train", "--data", str(tmp_path / "x-*.tfrecord"), *TINY, *out]) == 2
    assert "No dataset.json beside the shards" in capsys.readouterr().err
    assert not list(tmp_path.glob("run*"))


def test_train_from_a_locally_prepared_tfds_dataset(tmp_path, capsys):
    import tensorflow_datasets.public_api as tfds_api

    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 6, size=32)

    class ScaleShapes(tfds_api.core.GeneratorBasedBuilder, skip_registration=True):
        """Two classes of local PNG files, prepared offline (not registered by name)."""

        VERSION = tfds_api.core.Version("1.0.0")

        def _info(self):
            features = {"image": tfds_api.features.Image(),
                        "label": tfds_api.features.ClassLabel(names=["ring", "star"])}  # fmt: skip
            return tfds_api.core.DatasetInfo(
                builder=self, features=tfds_api.features.FeaturesDict(features),
                supervised_keys=("image", "label"),
            )  # fmt: skip

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for path in sorted(data.rglob("*.png")):
                yield path.name, {"image": str(path), "label": path.parent.name}

    ScaleShapes(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    train = ["train", "--data", "tfds:scale_shapes", "--tfds-dir", str(tmp_path / "tfds")]
    assert (
        main([*train, *TINY, *ONE_EPOCH, "--val-split", "0.25", "--out", str(tmp_path / "run")])
        == 0
    )
    assert "train: 9 records, val: 3 records" in capsys.readouterr().out
    rows = read_manifest(tmp_path / "run")
    assert len(rows) == 12 and {r["status"] for r in rows} == {"used"}
    assert {r["path"].split("#")[0] for r in rows} == {
        "tfds:scale_shapes/train[:75%]",
        "tfds:scale_shapes/train[75%:]",
    }
    assert sorted(r["label"] for r in rows) == ["ring"] * 6 + ["star"] * 6
    # export without --data finds the prepared dataset where the run did (--tfds-dir).
    tflite = ["export", str(tmp_path / "run"), "--format", "tflite", "--quantize", "int8"]
    assert main([*tflite, "--out", str(tmp_path / "lite")]) == 0, capsys.readouterr().err
    assert (tmp_path / "lite" / "model.tflite").is_file()
    assert (tmp_path / "run" / "saved_model" / "1" / "saved_model.pb").is_file()
    # A name that is not prepared there (and cannot be downloaded here) is one line.
    missing = ["train", "--data", "tfds:scale_shapes", "--tfds-dir", str(tmp_path / "empty")]
    assert main([*missing, *TINY, "--out", str(tmp_path / "run2")]) == 2
    assert "scale_shapes" in capsys.readouterr().err


def test_shuffled_shards_give_every_record_once_an_epoch_with_its_index(tmp_path, monkeypatch):
    from tfinetune.data import shards as shards_module
    from tfinetune.data.records import write_tfrecords

    data = write_shapes_folder(tmp_path / "data", ["ring", "star", "cross"], 10, size=16)
    files = scan_image_folder(data)
    paths = write_tfrecords(files, tmp_path / "train", shard_size=4)
    index = shards_module._shard_index(paths, files.class_names)
    assert index.counts.tolist() == [4] * 7 + [2] and index.labels.tolist() == files.labels
    monkeypatch.setattr(shards_module, "SHUFFLE_BYTES", 1)  # the smallest buffer: one record
    size = sum(Path(p).stat().st_size for p in paths)
    ds = shards_module.shuffled_records(index, 3, size, seed=5)
    epochs = [[(int(i), int(y)) for i, (_, y) in ds] for _ in range(2)]
    for epoch in epochs:  # every record once, with the label its index names
        assert sorted(i for i, _ in epoch) == list(range(30))
        assert all(index.labels[i] == y for i, y in epoch)
    assert epochs[0] != epochs[1]  # a new order every epoch
    assert [i for i, _ in epochs[0]] != list(range(30))


@pytest.mark.parametrize("cache, augment", [(True, None), (False, "light"), (True, "medium")])
def test_after_a_whole_pass_the_decode_log_names_the_failed_element(tmp_path, cache, augment):
    from tfinetune.data.datasets import files_datasets

    data = write_shapes_folder(
        tmp_path / "data", ["ring", "star"], 20, size=24, image_format="jpeg"
    )
    _truncated_jpeg(data / "star" / "cut_short.jpg")
    files = scan_image_folder(data, check="header")
    d = files_datasets(files, val_split=0, image_size=16, batch_size=4, cache=cache,
                       augment=augment)  # fmt: skip
    bad = files.paths.index(str(data / "star" / "cut_short.jpg"))
    seen = sum(len(y) for _, y in d.train)  # a whole pass
    assert seen == 40 and d.decode_log.failed().tolist() == [bad]
    assert sum(len(y) for _, y in d.train) == 40  # later passes: the same 40
    assert d.decode_log.failed().tolist() == [bad]


def test_a_scan_record_spares_a_second_check_of_unchanged_files(tmp_path, monkeypatch):
    from tfinetune.data import scan_record

    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 3, size=24)
    (data / "ring" / "notes.png").write_bytes(b"\x89PNG\r\n\x1a\n then nothing")
    record = tmp_path / "record"
    first = scan_image_folder(data, record=record)
    assert [Path(b.path).name for b in first.bad_files] == ["notes.png"]
    calls = []
    original = scan_record.check_files
    monkeypatch.setattr(
        scan_record, "check_files", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    again = scan_image_folder(data, record=record)
    assert calls == [] and again.paths == first.paths and again.bad_files == first.bad_files
    assert np.array_equal(again.hashes, first.hashes)
    # A file changed (its modification time): everything is checked again.
    stamp = (data / "star" / "star_0001.png").stat()
    os.utime(data / "star" / "star_0001.png", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    assert scan_image_folder(data, record=record).paths == first.paths and len(calls) == 1


def test_an_interrupted_convert_resumes_to_the_same_shards(tmp_path, monkeypatch, capsys):
    from tfinetune.data import records

    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 9, size=24)
    whole = records.convert_folder(data, tmp_path / "whole", shard_size=2, workers=2)
    written = []
    original = records._example

    def fails_at_the_ninth(encoded, labels):
        written.append(1)
        if len(written) == 9:
            raise KeyboardInterrupt
        return original(encoded, labels)

    monkeypatch.setattr(records, "_example", fails_at_the_ninth)
    with pytest.raises(KeyboardInterrupt):
        records.convert_folder(data, tmp_path / "out", shard_size=2, workers=1)
    partial = tmp_path / "out.partial"
    done_before = sorted(p.name for p in partial.glob("*.tfrecord"))
    assert "train-00004-of-00007.tfrecord" not in done_before  # the shard it failed in
    assert len(done_before) >= 4 and not (tmp_path / "out").exists()
    # Another shard size cannot mix into it; the same one finishes only what is missing.
    args = ["convert", "--data", str(data), "--out", str(tmp_path / "out"), "--resume"]
    assert main([*args, "--shard-size", "3"]) == 2
    assert "resuming would mix two" in capsys.readouterr().err
    monkeypatch.setattr(records, "_example", original)
    written.clear()
    assert main([*args, "--shard-size", "2"]) == 0
    out = tmp_path / "out"
    assert json.loads((out / "dataset.json").read_text()) == whole and not partial.exists()
    for shard in (tmp_path / "whole").glob("*.tfrecord"):
        assert (out / shard.name).read_bytes() == shard.read_bytes()
    assert not list(out.glob("*.partial")) and not (out / "plan.json").exists()
