import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import Stage, build_classifier, fine_tune, layer_groups
from tfinetune.models import find_backbone


def _data(n=32, size=32, classes=3):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, n).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _snapshot(layers):
    return {w.path: w.numpy().copy() for layer in layers for w in layer.weights}


def test_head_stage_leaves_backbone_bitwise_unchanged_then_top_blocks_train():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    backbone = find_backbone(model)
    before = _snapshot(backbone.layers)
    head_before = _snapshot(layer_groups(model)[-1].layers)
    history = fine_tune(model, _data(), _data(16), freeze_epochs=1, epochs=0, verbose=0)
    after_head = _snapshot(backbone.layers)
    for path, value in before.items():
        np.testing.assert_array_equal(after_head[path], value, err_msg=path)
    assert any(
        not np.array_equal(v, _snapshot(layer_groups(model)[-1].layers)[p])
        for p, v in head_before.items()
    )
    assert [s[0] for s in history.stages] == ["head"]

    fine_tune(model, _data(), freeze_epochs=0, epochs=1, unfreeze_groups=2, verbose=0)
    after = _snapshot(backbone.layers)
    groups = {g.name: g for g in layer_groups(model)}
    for name in ("block3", "block4"):
        for layer in groups[name].layers:
            for w in layer.weights:
                changed = not np.array_equal(after[w.path], after_head[w.path])
                is_bn = isinstance(layer, keras.layers.BatchNormalization)
                # Convolutions of unfrozen blocks train; BatchNorm (incl. moving stats) does not.
                assert changed != is_bn, w.path
    for name in ("stem", "block1", "block2"):
        for layer in groups[name].layers:
            for w in layer.weights:
                np.testing.assert_array_equal(after[w.path], after_head[w.path], err_msg=w.path)


def test_train_bn_updates_moving_statistics():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    bn = find_backbone(model).get_layer("block4_bn2")
    before = bn.moving_mean.numpy().copy()
    fine_tune(
        model, _data(), freeze_epochs=0, epochs=1, unfreeze_groups=1, train_bn=True, verbose=0
    )
    assert not np.array_equal(bn.moving_mean.numpy(), before)


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_callbacks_see_every_epoch_numbered_continuously_and_history_has_both_stages():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    recorder = _Recorder()
    history = fine_tune(
        model, _data(), _data(16), freeze_epochs=2, epochs=3, callbacks=[recorder], verbose=0
    )
    assert recorder.epochs == [0, 1, 2, 3, 4]
    assert history.stages == [("head", 0, 2), ("fine-tune", 2, 5)]
    assert len(history.history["loss"]) == len(history.history["val_accuracy"]) == 5


def test_second_stage_uses_the_lower_learning_rate():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    fine_tune(model, _data(), freeze_epochs=1, epochs=1, base_lr=1e-3, lr_mult=20, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-5)


@pytest.mark.parametrize(
    "stage, message",
    [
        (Stage(1, 99, 1e-3), "1 to 6 layer groups"),
        (Stage(1, 1, 0.0), "learning rate must be above 0"),
        (Stage(0, 1, 1e-3), "at least 1 epoch"),
    ],
)
def test_bad_stages_are_refused(stage, message):
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    with pytest.raises(ValueError, match=message):
        fine_tune(model, _data(), stages=[stage], verbose=0)


def test_each_stage_ends_with_the_averaged_weights():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    fine_tune(model, _data(), freeze_epochs=0, epochs=2, unfreeze_groups=2, verbose=0)
    optimizer = model.optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.9)
    averages = optimizer._model_variables_moving_average
    assert len(averages) == len(model.trainable_weights) > 2
    for weight, average in zip(model.trainable_weights, averages, strict=True):
        assert average.path.endswith(weight.path.replace("/", "_") + "_average")
        np.testing.assert_array_equal(weight.numpy(), average.numpy(), err_msg=weight.path)


def test_without_ema_the_raw_weights_stay():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    fine_tune(model, _data(), freeze_epochs=1, epochs=0, ema_momentum=None, verbose=0)
    assert not model.optimizer.use_ema
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        fine_tune(model, _data(), freeze_epochs=1, epochs=0, ema_momentum=1.5, verbose=0)
