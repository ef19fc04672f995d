"""The offline demo, end to end (slow: it pretrains and fine-tunes for real)."""

import json

import pytest

from tfinetune.cli.demo import prepare_demo_dir, run_demo

from conftest import asset


@pytest.mark.slow
def test_demo_shows_transfer_beating_training_from_scratch(tmp_path):
    summary = run_demo(tmp_path / "demo", verbose=0)
    # Bars from benchmarks/test_bars.py (seeds 0-2): the source task 0.95-0.99; fine-tuned
    # 0.87-0.92 against 0.28-0.30 from scratch (4 classes: chance 0.25), a gap of 0.58-0.63.
    assert summary["source_accuracy"] >= 0.8
    assert summary["fine_tuned_accuracy"] >= summary["scratch_accuracy"] + 0.15
    run = tmp_path / "demo" / "run"
    for name in ("metrics.json", "training_curves.png", "saved_model/1/saved_model.pb"):
        assert (run / name).is_file(), name
    assert summary["example_prediction"] in ("hexagon", "star", "ellipse", "cog")
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved["fine_tuned_accuracy"] == summary["fine_tuned_accuracy"]


@pytest.mark.slow
def test_demo_with_local_imagenet_weights(tmp_path):
    weights = asset("weights", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    # Ten labels per class: the demo's claim (transfer wins) where labels are scarcest.
    summary = run_demo(tmp_path / "demo", weights=weights, labels_per_class=10, verbose=0)
    assert summary["source_accuracy"] is None
    # benchmarks/test_bars.py (seeds 0-2): fine-tuned 0.59-0.70, from scratch 0.25 (chance).
    assert summary["fine_tuned_accuracy"] >= summary["scratch_accuracy"] + 0.15


def test_demo_replaces_its_own_folder_but_not_a_stranger(tmp_path):
    out = prepare_demo_dir(tmp_path / "demo")
    (out / "data" / "stale_class").mkdir(parents=True)
    assert not (prepare_demo_dir(out) / "data").exists()  # an earlier demo's data goes
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not empty"):
        prepare_demo_dir(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "keep"
