import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import Stage, build_classifier, fine_tune, freeze_to, layer_groups
from tfinetune.models.classifier import find_backbone
from tfinetune.training.optimizers import group_learning_rates, learning_rates_of


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

    fine_tune(model, _data(), freeze_epochs=0, epochs=1, train_groups=3, verbose=0)
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
    fine_tune(model, _data(), freeze_epochs=0, epochs=1, train_groups=2, train_bn=True, verbose=0)
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


def test_second_stage_spreads_rates_geometrically_over_the_unfrozen_groups():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    fine_tune(
        model, _data(), freeze_epochs=1, epochs=1, learning_rate=1e-3, lr_mult=100, verbose=0
    )  # fine-tune stage: head at learning_rate / 2, the lowest of 4 unfrozen groups at 1/100 of it
    rates = learning_rates_of(model.optimizer)
    expected = {"lr_block1": 5e-6, "lr_block2": 5e-6 * 100 ** (1 / 4), "lr_block3": 5e-5}
    expected |= {"lr_block4": 5e-6 * 100 ** (3 / 4), "lr_head": 5e-4}
    assert rates.keys() == expected.keys()
    for name, rate in expected.items():
        assert rates[name] == pytest.approx(rate, rel=1e-6), name


def _gradients(model, x, y):
    """Each trainable weight's gradient on `(x, y)`, on any backend: the step a plain Keras
    SGD at rate 1 takes (weights, BatchNorm statistics and compile state put back after)."""
    weights = [w.numpy().copy() for w in model.weights]
    before = {v.path: v.numpy().copy() for v in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    grads = {v.path: before[v.path] - v.numpy() for v in model.trainable_weights}
    model.set_weights(weights)
    return grads


def test_one_sgd_step_moves_each_group_by_its_own_rate_times_its_gradient():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32, dropout=0.0)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1], "int32")
    stage = Stage(1, 4, 1.0, lr_mult=10.0)  # block2..block4 and the head; rates 0.1 .. 1
    groups = freeze_to(model, 4)[-4:]  # as the stage will: frozen BatchNorm layers infer
    grads = _gradients(model, x, y)
    before = {v.path: v.numpy().copy() for v in model.trainable_weights}
    fine_tune(
        model,
        tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
        stages=[stage],
        optimizer="sgd",
        ema_momentum=None,
        verbose=0,
    )
    after = {v.path: v.numpy() for v in model.weights}
    rates = group_learning_rates(4, 1.0, lr_mult=10.0)
    for group, rate in zip(groups, rates, strict=True):
        for layer in group.layers:
            for v in layer.trainable_weights:
                g, step = grads[v.path], before[v.path] - after[v.path]
                measured = float(np.sum(step * g) / np.sum(g * g))  # least-squares step / grad
                assert measured / rate == pytest.approx(1.0, abs=1e-3), (group.name, v.path)
    assert len({round(r, 6) for r in rates}) == 4


class _TrainableCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = []

    def on_epoch_begin(self, epoch, logs=None):  # each stage below is one epoch
        self.counts.append(sum(int(np.prod(w.shape)) for w in self.model.trainable_weights))


def test_trainable_parameters_match_the_groups_at_every_stage():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    counter = _TrainableCounter()
    stages = [Stage(1, 1, 1e-3), Stage(1, "block3", 1e-4, lr_mult=4), Stage(1, 6, 1e-5)]
    fine_tune(model, _data(), stages=stages, callbacks=[counter], verbose=0)
    groups = layer_groups(model)

    def expected(n):  # weights of the top n groups, without BatchNorm (frozen by default)
        return sum(
            int(np.prod(w.shape))
            for g in groups[-n:]
            for layer in g.layers
            if not isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.weights
        )

    assert counter.counts == [expected(1), expected(3), expected(6)]
    assert counter.counts[0] < counter.counts[1] < counter.counts[2]


@pytest.mark.parametrize(
    "stage, message",
    [
        (Stage(1, 0, 1e-3), r"1 or more layer groups of this model \(6\)"),
        (Stage(1, "al", 1e-3), "no layer group 'al'"),
        (Stage(1, "block9", 1e-3), "no layer group 'block9'. Did you mean 'block4'"),
        (Stage(1, 1, 0.0), "learning rate must be above 0"),
        (Stage(1, 1, -1e-3), "learning rate must be above 0"),
        (Stage(0, 1, 1e-3), "at least 1 epoch"),
        (Stage(1, 2, 1e-3, lr_mult=0.5), "lr_mult must be 1 or more"),
        (Stage(1, 2, 1e-3, schedule="linear"), "Unknown schedule 'linear'"),
    ],
)
def test_bad_stages_are_refused(stage, message):
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    with pytest.raises(ValueError, match=message):
        fine_tune(model, _data(), stages=[stage], verbose=0)


def test_negative_epochs_are_refused():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    with pytest.raises(ValueError, match="freeze_epochs must be a whole number, 0 or more"):
        fine_tune(model, _data(), freeze_epochs=-1, epochs=2, verbose=0)


def test_each_stage_ends_with_the_averaged_weights():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    fine_tune(model, _data(), freeze_epochs=0, epochs=2, train_groups=3, verbose=0)
    optimizers = model.optimizer.optimizers  # one per learning rate
    assert len(optimizers) == 3
    averages = {}
    for optimizer in optimizers:
        assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.9)
        averages |= {a.path: a for a in optimizer._model_variables_moving_average}
    assert len(averages) == len(model.trainable_weights) > 2
    for weight in model.trainable_weights:
        average = next(
            a for p, a in averages.items() if p.endswith(weight.path.replace("/", "_") + "_average")
        )
        np.testing.assert_array_equal(weight.numpy(), average.numpy(), err_msg=weight.path)


def test_without_ema_the_raw_weights_stay():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    fine_tune(model, _data(), freeze_epochs=1, epochs=0, ema_momentum=None, verbose=0)
    assert not model.optimizer.use_ema and model.optimizer.name == "lr_head"
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        fine_tune(model, _data(), freeze_epochs=1, epochs=0, ema_momentum=1.5, verbose=0)


class _BatchesPerEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches[-1] += 1


@pytest.mark.parametrize("schedule", ["constant", "one_cycle"])
def test_steps_per_epoch_ends_the_epochs_of_a_dataset_that_repeats_forever(schedule):
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    counter = _BatchesPerEpoch()
    history = fine_tune(
        model,
        _data().repeat(),  # 4 batches a pass, repeated without end: the usual Keras pattern
        _data(16),
        freeze_epochs=1,
        epochs=2,
        steps_per_epoch=3,
        schedule=schedule,
        callbacks=[counter],
        verbose=0,
    )
    assert counter.batches == [3, 3, 3]
    assert history.epochs == 3 and len(history.history["val_loss"]) == 3


def test_steps_per_epoch_must_be_a_positive_whole_number():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    with pytest.raises(ValueError, match=r"steps_per_epoch must be 1 or more. Received: 0"):
        fine_tune(model, _data(), steps_per_epoch=0, verbose=0)


def test_a_backbone_of_your_own_keeps_its_layer_groups_through_fine_tune():
    from tfinetune import CATALOGUE, BackboneSpec
    from tfinetune.models.catalogue import convnet_tiny

    tiny = convnet_tiny((32, 32, 3))
    own = keras.Model(tiny.input, tiny.output, name="my_feature_extractor")
    assert own.name not in CATALOGUE
    spec = BackboneSpec.from_model(own, "tf", group_pattern=r"^(block\d+)_")
    model = build_classifier(spec, 3)
    names = [g.name for g in layer_groups(model)]  # no spec passed: the model knows it
    assert names == ["stem", "block1", "block2", "block3", "block4", "head"]
    block2 = own.get_layer("block2_conv1").kernel.numpy().copy()
    block3 = own.get_layer("block3_conv1").kernel.numpy().copy()
    fine_tune(model, _data(), freeze_epochs=0, epochs=1, train_groups=3, lr_mult=10, verbose=0)
    rates = learning_rates_of(model.optimizer)
    assert sorted(rates) == ["lr_block3", "lr_block4", "lr_head"]
    assert rates["lr_block3"] == pytest.approx(rates["lr_head"] / 10)
    np.testing.assert_array_equal(own.get_layer("block2_conv1").kernel.numpy(), block2)
    assert not np.array_equal(own.get_layer("block3_conv1").kernel.numpy(), block3)


def test_epoch_writing_callbacks_see_one_continuous_run_across_stages(tmp_path, capsys):
    import csv

    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    log = tmp_path / "log.csv"
    ends = []
    count_ends = keras.callbacks.LambdaCallback(on_train_end=lambda logs: ends.append(logs))
    stages = [Stage(2, 1, 1e-3, "head"), Stage(3, "all", 1e-4, "fine-tune")]
    history = fine_tune(
        model, _data(), _data(16), stages=stages, verbose=2,
        callbacks=[keras.callbacks.CSVLogger(str(log)), count_ends],
    )  # fmt: skip
    rows = list(csv.DictReader(log.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]  # both stages, one file
    assert [float(r["loss"]) for r in rows] == pytest.approx(history.history["loss"], rel=1e-5)
    assert len(ends) == 1  # the run ends once, after the last stage
    printed = capsys.readouterr().out
    assert "raw weights" in printed and "moving average" in printed  # which weights
    facts = history.to_dict()["stages"]
    assert [s["optimizer"]["ends_on_averaged_weights"] for s in facts] == [True, True]
