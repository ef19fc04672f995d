"""Shared fixtures: tiny synthetic image folders, and the offline assets in ../shared/assets."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import pytest

from tfinetune.data.synthetic import write_shapes_folder

ASSETS = Path(
    os.environ.get("TFINETUNE_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets")
)


def asset(*parts: str) -> Path:
    """Path of an offline asset; skip the test without it, or fail when assets are required."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        message = (
            f"offline asset {path} is missing (see ../shared/assets/README.md; set "
            "TFINETUNE_ASSETS to its folder)"
        )
        if os.environ.get("TFINETUNE_REQUIRE_ASSETS") == "1":
            pytest.fail(message + " and TFINETUNE_REQUIRE_ASSETS=1")
        pytest.skip(message)
    return path


# The test files that take longest in CI, longest first (CI's --durations, stop 42: the
# flowers run's 740 s setup, YAMNet's 490 s, three same-pixels runs of ~105 s, the demos...).
# The two workers take whole files in collection order (`--dist loadfile` with
# `--no-loadscope-reorder`, setup.cfg), so these start first and the short files even out
# the end; xdist's own order, most tests first, started them last, one worker idle meanwhile.
LONGEST_FIRST = (
    "test_real_data.py",
    "test_text_audio_real.py",
    "test_same_pixels.py",
    "test_demo.py",
    "test_hub.py",
    "test_notebooks.py",
    "test_jax_backend.py",
    "test_saving.py",
    "test_gpu_benchmark.py",
    "test_experiments.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest test files first (LONGEST_FIRST), the others in collection order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Three classes of 8 small PNG shape images each."""
    return write_shapes_folder(tmp_path / "shapes", ["circle", "cross", "ring"], 8, size=32)


def files_pipeline(files, image_size=224, batch_size=32, *, training=False, **options):
    """One dataset of `(pixels, labels)` batches from labelled files, through the pipeline."""
    from tfinetune.data.datasets import file_source
    from tfinetune.data.pipeline import build_pipeline

    source, count, encoded_bytes = file_source(files, options.get("deterministic", True))
    options.setdefault("seed", None)
    return build_pipeline(
        source,
        count=count,
        encoded_bytes=encoded_bytes,
        training=training,
        num_classes=len(files.class_names),
        image_size=image_size,
        batch_size=batch_size,
        **options,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny run trained through the command line, shared by the CLI and export tests."""
    root = tmp_path_factory.mktemp("cli")
    data = write_shapes_folder(root / "data", ["cross", "ring"], 10, size=32, image_format="jpeg")
    (data / "ring" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ["train", "--data", str(data), "--backbone", "convnet_tiny", "--weights", "none"]
    args += ["--image-size", "32", "--epochs", "1", "--freeze-epochs", "1", "--batch-size", "8"]
    from tfinetune.cli import main

    assert main([*args, "--out", str(root / "run")]) == 0
    return data, root / "run"
