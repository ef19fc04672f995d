import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import build_classifier, fine_tune
from tfinetune.training.freezing import freeze_to
from tfinetune.training.lr_finder import lr_find, smooth_losses, suggest


def _blobs(n=2048, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centres = rng.normal(0, 3, (4, 8))
    x = (centres[y] + rng.normal(0, 1, (n, 8))).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(batch)


def _dense_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(hidden))


def test_finder_restores_weights_bn_statistics_and_the_compiled_optimizer():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(64) % 3)).batch(4)
    fine_tune(model, data, freeze_epochs=1, epochs=0, verbose=0)  # compiled, optimizer has state
    freeze_to(model, 3, train_bn=True)  # BatchNorm statistics would move in the sweep
    optimizer = model.optimizer
    state = [v.numpy().copy() for v in optimizer.variables]
    before = [w.numpy().copy() for w in model.weights]
    result = lr_find(model, data, num_steps=16, end_lr=1.0, verbose=0)
    assert len(result.losses) >= 4
    for w, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)
    assert model.optimizer is optimizer and model.loss == "sparse_categorical_crossentropy"
    for v, value in zip(optimizer.variables, state, strict=True):
        np.testing.assert_array_equal(v.numpy(), value, err_msg=v.path)
    assert model.get_layer("convnet_tiny").get_layer("block4_bn2").trainable  # flags untouched


def test_suggestions_lie_on_the_descending_part_of_the_curve(tmp_path):
    model = _dense_model()
    result = lr_find(model, _blobs(), num_steps=120, start_lr=1e-6, end_lr=10.0, verbose=0)
    smoothed = np.array(result.smoothed)
    lowest = int(smoothed.argmin())
    assert smoothed[lowest] < 0.5 * smoothed[0]  # the sweep found a rate that learns
    for name, rate in result.suggestions.items():
        i = result.learning_rates.index(rate)
        assert len(smoothed) // 10 <= i < lowest, name  # past the noisy start, before the minimum
        assert smoothed[lowest] < smoothed[i] < smoothed[0], name
        assert smoothed[i + 3] < smoothed[i - 3], name  # still falling there
    fig = result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 5000 and fig.axes[0].get_xscale() == "log"


def test_the_sweep_stops_when_the_loss_diverges():
    result = lr_find(
        _dense_model(), _blobs(), num_steps=120, end_lr=1e4, optimizer="sgd", verbose=0
    )
    assert result.diverged and len(result.losses) < 120
    assert result.learning_rates[-1] < 1e4
    assert max(result.smoothed) > 4 * min(result.smoothed) or not np.isfinite(result.losses[-1])


def test_a_dataset_too_small_for_the_steps_is_refused_and_nothing_changes():
    model = _dense_model()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match="has 8 batches but the finder needs num_steps=50"):
        lr_find(model, _blobs(n=128), num_steps=50, verbose=0)
    unknown_length = _blobs(n=128).filter(lambda x, y: True)
    with pytest.raises(ValueError, match="ran out after 8 batches; the finder needs num_steps=50"):
        lr_find(model, unknown_length, num_steps=50, end_lr=1e-3, verbose=0)
    for w, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), value)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_find(model, _blobs(), start_lr=1.0, end_lr=1e-3)


def test_smoothing_is_bias_corrected_and_suggest_finds_the_valley_of_a_known_curve():
    assert smooth_losses([2.0]) == [2.0]
    assert smooth_losses([1.0, 3.0], beta=0.5) == pytest.approx([1.0, 1.75 / 0.75])
    lrs = np.logspace(-6, 0, 61)
    curve = np.where(lrs < 1e-2, 2.0 - 0.5 * (np.log10(lrs) + 6), 0.0 + (np.log10(lrs) + 2) ** 2)
    s = suggest(lrs, list(curve))
    assert 1e-5 < s["valley"] < 1e-2 and 1e-6 < s["steepest"] < 1e-2
