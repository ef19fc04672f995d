"""fine_tune's options: schedules, Keras callbacks across stages, label smoothing,
gradient accumulation, mixed precision and tf.distribute."""

import csv
import itertools
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import Stage, build_classifier, fine_tune
from tfinetune.training.losses import SmoothedSparseCategoricalCrossentropy, resolve_loss
from tfinetune.training.schedules import CosineCycle, ScaledSchedule, one_cycle, warmup_cosine


def _data(n=32, size=32, classes=3, batch=8):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, n).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _model():
    return build_classifier("convnet_tiny", 3, weights=None, image_size=32)


def test_warmup_cosine_rises_linearly_then_decays_to_zero():
    s = warmup_cosine(1e-3, total_steps=100, warmup_fraction=0.2)
    values = [float(s(i)) for i in range(101)]
    assert values[0] == 0.0 and values[10] == pytest.approx(5e-4) and max(values) == values[20]
    assert all(a >= b for a, b in itertools.pairwise(values[20:]))
    assert values[60] == pytest.approx(5e-4, rel=1e-5) and values[100] == pytest.approx(0.0)


def test_one_cycle_starts_low_peaks_then_anneals_far_below_the_start():
    s = one_cycle(1e-2, total_steps=200, pct_start=0.25)
    values = np.array([float(s(i)) for i in range(201)])
    assert int(values.argmax()) == 50 and values.max() == pytest.approx(1e-2, rel=1e-5)
    assert values[0] == pytest.approx(4e-4, rel=1e-5) and values[-1] == pytest.approx(
        4e-8, rel=1e-3
    )
    assert np.all(np.diff(values[:51]) > 0) and np.all(np.diff(values[50:]) < 0)


def test_schedules_survive_a_keras_round_trip():
    s = ScaledSchedule(CosineCycle(0.1, 1.0, 0.0, 10, 0.3), 0.5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert [float(again(i)) for i in range(12)] == [float(s(i)) for i in range(12)]


class _Rates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates, self.beta_1 = [], []

    def on_train_batch_begin(self, batch, logs=None):
        inner = self.model.optimizer.optimizers
        step = inner[0].iterations
        self.rates.append({o.name: float(o.learning_rate) for o in inner})
        assert all(int(o.iterations) == int(step) for o in inner)

    def on_train_batch_end(self, batch, logs=None):  # the momentum this step used
        inner = self.model.optimizer.optimizers
        self.beta_1.append(float(keras.ops.convert_to_numpy(inner[0].beta_1)))


def test_one_cycle_stage_cycles_every_groups_rate_and_leaves_momentum_alone(tmp_path):
    model = _model()
    recorder = _Rates()
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "e{epoch}.keras")
    stage = Stage(2, 3, 1e-3, lr_mult=10, schedule="one_cycle")  # 4 batches per epoch
    fine_tune(model, _data(), stages=[stage], callbacks=[recorder, checkpoint], verbose=0)
    head = [r["lr_head"] for r in recorder.rates]
    low = [r["lr_block3"] for r in recorder.rates]
    assert int(np.argmax(head)) == 2 and max(head) == pytest.approx(1e-3, rel=1e-5)
    np.testing.assert_allclose(np.array(low) * 10, head, rtol=1e-5)
    # Keras optimizers have no public way to schedule momentum: one-cycle leaves it alone.
    assert recorder.beta_1 == [pytest.approx(0.9)] * 8
    assert all(o.beta_1 == 0.9 for o in model.optimizer.optimizers)
    reloaded = keras.saving.load_model(tmp_path / "e1.keras")
    assert [o.beta_1 for o in reloaded.optimizer.optimizers] == [0.9, 0.9, 0.9]


def test_keras_callbacks_work_across_stages(tmp_path):
    model = _model()
    log = tmp_path / "log.csv"
    callbacks = [
        keras.callbacks.CSVLogger(str(log), append=True),
        keras.callbacks.ModelCheckpoint(tmp_path / "e{epoch}.keras"),
        keras.callbacks.TensorBoard(tmp_path / "tb"),
    ]
    history = fine_tune(
        model,
        _data(),
        _data(16),
        freeze_epochs=2,
        epochs=2,
        callbacks=callbacks,
        ema_momentum=None,
        verbose=0,
    )
    rows = list(csv.DictReader(log.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], history.history["loss"], rtol=1e-6)
    assert sorted(p.name for p in tmp_path.glob("e*.keras")) == [
        f"e{i}.keras" for i in (1, 2, 3, 4)
    ]
    last = keras.saving.load_model(tmp_path / "e4.keras")
    x = next(iter(_data()))[0]
    assert np.abs(last.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-5
    assert list((tmp_path / "tb" / "train").glob("events.out.tfevents.*"))


def test_early_stopping_ends_the_run_and_the_history_says_where():
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=1e9)
    history = fine_tune(_model(), _data(), freeze_epochs=5, epochs=5, callbacks=[stop], verbose=0)
    assert history.stages == [("head", 0, 2)]


def test_label_smoothing_matches_keras_categorical_crossentropy():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=16).astype("float32")
    labels = rng.integers(0, 5, 16)
    ours = SmoothedSparseCategoricalCrossentropy(0.2)(labels, probs)
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)
    assert float(ours) == pytest.approx(float(keras_loss(np.eye(5)[labels], probs)), rel=1e-6)
    assert float(ours) > float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    model = _model()
    fine_tune(model, _data(), freeze_epochs=1, epochs=0, label_smoothing=0.1, verbose=0)
    assert isinstance(model.loss, SmoothedSparseCategoricalCrossentropy)
    with pytest.raises(ValueError, match="label_smoothing applies to cross-entropy"):
        resolve_loss("mse", 0.1)


def test_gradient_accumulation_applies_the_update_every_k_steps():
    x, y = next(iter(_data(n=8)))
    one_batch = tf.data.Dataset.from_tensors((x, y))
    model = _model()
    head = model.get_layer("head_predictions")
    before = head.kernel.numpy().copy()
    options = dict(optimizer="sgd", ema_momentum=None, gradient_accumulation_steps=2, verbose=0)
    fine_tune(model, one_batch, stages=[Stage(1, 1, 0.1)], **options)
    np.testing.assert_array_equal(head.kernel.numpy(), before)  # one step: only accumulated
    fine_tune(model, one_batch.repeat(2), stages=[Stage(1, 1, 0.1)], **options)
    assert not np.array_equal(head.kernel.numpy(), before)


def test_mixed_precision_and_mirrored_strategy_keep_discriminative_rates():
    script = textwrap.dedent(
        """
        import json
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
        from tfinetune import Stage, build_classifier, fine_tune
        from tfinetune.training.optimizers import learning_rates_of
        x = np.random.default_rng(0).uniform(0, 255, (32, 32, 32, 3)).astype("float32")
        y = np.arange(32) % 3
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
            before = model.get_layer("convnet_tiny").get_layer("block4_conv1").kernel.numpy()
            fine_tune(model, ds, stages=[Stage(2, 3, 1e-3, lr_mult=10)], verbose=0)
        after = model.get_layer("convnet_tiny").get_layer("block4_conv1").kernel.numpy()
        opt = model.optimizer
        print(type(opt).__name__, type(opt.inner_optimizer).__name__,
              strategy.num_replicas_in_sync, not np.array_equal(before, after))
        print(json.dumps(learning_rates_of(opt)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == "LossScaleOptimizer MultiOptimizer 2 True"
    rates = json.loads(second)
    assert rates["lr_head"] == pytest.approx(1e-3) and rates["lr_block3"] == pytest.approx(1e-4)
    assert rates["lr_block4"] == pytest.approx(10**-3.5, rel=1e-5)


def test_fine_tune_takes_config_objects_and_at_most_twelve_parameters():
    import inspect

    from tfinetune import PerformanceConfig, TrainingConfig

    assert len(inspect.signature(fine_tune).parameters) <= 12  # the bound (#31)
    # The configs and the old keyword spelling train the same: the same smoothed loss, the
    # same optimizer, the same weights from the same start.
    keras.utils.set_random_seed(3)
    by_config = _model()
    keras.utils.set_random_seed(3)
    by_name = _model()
    stages = [Stage(1, 1, 0.1)]
    training = TrainingConfig(label_smoothing=0.2, optimizer="sgd", ema_momentum=None)
    fine_tune(by_config, _data(), stages=stages, training=training,
              performance=PerformanceConfig(precision="float32"), verbose=0)  # fmt: skip
    fine_tune(by_name, _data(), stages=stages, label_smoothing=0.2, optimizer="sgd",
              ema_momentum=None, precision="float32", verbose=0)  # fmt: skip
    for model in (by_config, by_name):
        assert model.loss.label_smoothing == 0.2
        assert type(model.optimizer).__name__ == "SGD"
    np.testing.assert_allclose(
        by_config.get_layer("head_predictions").kernel.numpy(),
        by_name.get_layer("head_predictions").kernel.numpy(),
    )


def test_fine_tune_refuses_unknown_or_mixed_keywords_showing_the_new_spelling():
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) lr_multiplier.*"
                       r"training=TrainingConfig\(.*label_smoothing"):  # fmt: skip
        fine_tune(_model(), _data(), lr_multiplier=3, verbose=0)
    with pytest.raises(TypeError, match="not both: put those values in the Stage objects"):
        fine_tune(_model(), _data(), stages=[Stage(1, 1, 1e-3)], epochs=3, verbose=0)
