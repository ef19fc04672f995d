import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfinetune import (
    Stage,
    build_classifier,
    fine_tune,
    image_folder_datasets,
    scan_image_folder,
    split_files,
)
from tfinetune.data.files import LabelledFiles
from tfinetune.data.images import load_image
from tfinetune.data.tables import read_csv_files

from conftest import files_pipeline


def _save(path: Path, fmt: str, mode: str = "RGB", size=(20, 24)):
    seed = zlib.crc32(str(path).encode())  # a different image for every path
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def messy_folder(tmp_path):
    """Two classes of good images plus one of every kind of bad file."""
    root = tmp_path / "messy"
    for cls in ("a", "b"):
        (root / cls / "nested").mkdir(parents=True)
        for i in range(4):
            _save(root / cls / f"good_{i}.jpg", "JPEG")
    _save(root / "a" / "nested" / "gray.png", "PNG", "L")
    _save(root / "a" / "rgba.png", "PNG", "RGBA")
    _save(root / "b" / "anim.gif", "GIF", "P")
    _save(root / "b" / "no_extension", "PNG")  # found by content
    jpeg = _save(root / "a" / "tmp.jpg", "JPEG")
    (root / "a" / "tmp.jpg").unlink()
    (root / "a" / "corrupt.jpg").write_bytes(jpeg[:300] + bytes(range(256)) * 8)
    png = _save(root / "b" / "tmp.png", "PNG")
    (root / "b" / "tmp.png").unlink()
    (root / "b" / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.jpg").write_text("this is not a picture")
    (root / "b" / "README.txt").write_text("reported: every file is used or reported")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01")
    return root


def test_scan_finds_good_images_and_reports_exactly_the_bad_ones(messy_folder):
    files = scan_image_folder(messy_folder)
    assert files.class_names == ["a", "b"]
    names = sorted(Path(p).name for p in files.paths)
    assert names == sorted(
        [f"good_{i}.jpg" for i in range(4)] * 2
        + ["gray.png", "rgba.png", "anim.gif", "no_extension"]
    )
    bad = {Path(b.path).name: b.reason for b in files.bad_files}
    assert sorted(bad) == ["README.txt", "corrupt.jpg", "empty.jpg", "notes.jpg", "truncated.png"]
    assert bad["empty.jpg"] == "empty file (0 bytes)"
    assert bad["README.txt"] == "not an image: the content starts with b'reported'"
    assert bad["notes.jpg"].startswith("not an image")
    assert "Invalid JPEG data" in bad["corrupt.jpg"]
    assert "Invalid PNG data" in bad["truncated.png"]


def test_training_on_a_messy_folder_runs_to_the_end(messy_folder):
    data = image_folder_datasets(messy_folder, image_size=32, batch_size=4, val_split=0.25)
    assert len(data.bad_files) == 5
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    history = fine_tune(model, data.train, data.val, stages=[Stage(2, 2, 1e-3)], verbose=0)
    assert history.epochs == 2 and np.isfinite(history.history["loss"]).all()


def test_without_verification_a_bad_file_is_dropped_not_fatal(messy_folder):
    files = scan_image_folder(messy_folder, verify=False)
    assert len(files) == 14  # 12 good, plus the corrupt and the truncated file
    batches = list(files_pipeline(files, 16, batch_size=64))
    assert sum(len(y) for _, y in batches) == 12


def test_dataset_pixels_equal_load_image_and_labels_follow_folders(tiny_folder):
    files = scan_image_folder(tiny_folder)
    x, y = next(iter(files_pipeline(files, 24, batch_size=100)))
    assert x.shape == (24, 24, 24, 3) and str(x.dtype) == "<dtype: 'float32'>"
    np.testing.assert_array_equal(x[5].numpy(), load_image(files.paths[5], 24).numpy())
    assert y.numpy().tolist() == files.labels == [0] * 8 + [1] * 8 + [2] * 8


def test_training_dataset_is_augmented_and_validation_is_not(tiny_folder):
    files = scan_image_folder(tiny_folder)
    plain = next(iter(files_pipeline(files, 32, batch_size=24)))[0].numpy()
    augmented = files_pipeline(files, 32, batch_size=24, training=True, seed=3)
    x, y = next(iter(augmented))
    assert sorted(y.numpy().tolist()) == files.labels  # shuffled, all there
    assert not np.allclose(np.sort(x.numpy().ravel()), np.sort(plain.ravel()))


def test_split_is_stratified_and_seeded():
    labels = [0] * 30 + [1] * 10 + [2] * 5
    files = LabelledFiles([f"{i}.jpg" for i in range(45)], labels, ["a", "b", "c"])
    train, val = split_files(files, 0.2, seed=7)
    assert sorted(val.labels) == [0] * 6 + [1] * 2 + [2] * 1
    assert sorted(train.paths + val.paths, key=lambda p: int(p[:-4])) == files.paths
    assert split_files(files, 0.2, seed=7)[1].paths == val.paths
    assert split_files(files, 0.2, seed=8)[1].paths != val.paths


def test_two_folders_must_share_classes(tiny_folder, tmp_path):
    other = tmp_path / "val"
    (other / "circle").mkdir(parents=True)
    (other / "triangle").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"classes the model does not know: \['triangle'\]"):
        image_folder_datasets(tiny_folder, other, image_size=32)


def test_missing_and_empty_folders_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Data folder not found: .*nope"):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no class sub-folders"):
        scan_image_folder(tmp_path / "empty")
    (tmp_path / "noimages" / "cats").mkdir(parents=True)
    (tmp_path / "noimages" / "cats" / ".DS_Store").write_text("junk")
    with pytest.raises(ValueError, match=r"Class folder .*cats' has no files \(only hidden"):
        scan_image_folder(tmp_path / "noimages")
    (tmp_path / "noimages" / "cats" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"notes.txt: not an image: the content starts with b'hi'"):
        scan_image_folder(tmp_path / "noimages")


def _encoded(fmt, seed=0, size=16, **options):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def _tensorflow_decodes_webp() -> bool:
    import tensorflow as tf

    try:
        tf.io.decode_image(_encoded("WEBP", lossless=True))
        return True
    except tf.errors.InvalidArgumentError:
        return False


def test_webp_is_used_tiff_reported_and_junk_ignored_in_folders_and_csvs(tmp_path):
    root = tmp_path / "data"
    for seed, label in enumerate(("cat", "dog")):
        (root / label).mkdir(parents=True)
        (root / label / "a.png").write_bytes(_encoded("PNG", seed=seed))
    (root / "cat" / "b.webp").write_bytes(_encoded("WEBP", seed=3, lossless=True))
    (root / "cat" / "scan.tif").write_bytes(_encoded("TIFF", seed=4))
    (root / "dog" / "Thumbs.db").write_bytes(b"\x00" * 64)
    (root / "dog" / ".DS_Store").write_bytes(b"\x00" * 64)
    (root / "dog" / "__MACOSX").mkdir()
    (root / "dog" / "__MACOSX" / "a.png").write_bytes(b"resource fork")
    files = scan_image_folder(root)
    reasons = {Path(b.path).name: b.reason for b in files.bad_files}
    assert reasons["scan.tif"].startswith("a TIFF image: TensorFlow does not decode TIFF")
    assert sorted(Path(p).name for p in files.ignored) == [".DS_Store", "Thumbs.db", "__MACOSX"]
    webp = str(root / "cat" / "b.webp")
    if _tensorflow_decodes_webp():
        assert webp in files.paths and "b.webp" not in reasons
    else:  # the floor's TensorFlow: reported, with what to do
        assert "cannot decode: upgrade TensorFlow or convert it" in reasons["b.webp"]
    used_or_reported = len(files.paths) + len(files.bad_files) + len(files.ignored)
    assert used_or_reported == 7  # every file and folder placed, none dropped silently

    table = root / "rows.csv"  # paths relative to its folder
    rows = ["path,label", "cat/a.png,cat", "cat/scan.tif,cat", "dog/a.png,dog", "cat/b.webp,cat"]
    table.write_text("\n".join(rows) + "\n")
    from_csv = read_csv_files(table)
    reasons = {Path(b.path).name: b.reason for b in from_csv.bad_files}
    assert reasons["scan.tif"].startswith("a TIFF image")
    assert (webp in from_csv.paths) == _tensorflow_decodes_webp()
