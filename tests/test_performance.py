"""The performance policy: mixed precision while fine-tuning, XLA, `auto` per device."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune.cli.main import main
from tfinetune.models.classifier import build_classifier
from tfinetune.models.heads import OUTPUT_LAYER
from tfinetune.training.fine_tuning import fine_tune
from tfinetune.training.performance import precision_scope, resolve_performance


def _bright_or_dark(n=64, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 120, (n, size, size, 3)) + 120 * y[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices((x.astype("float32"), y)).batch(8)


class Inspect(keras.callbacks.Callback):
    """What the model looks like while it trains: dtypes, the optimizer, per stage."""

    def __init__(self, hidden: str) -> None:
        super().__init__()
        self.hidden, self.seen = hidden, []

    def on_train_batch_end(self, batch, logs=None):
        if batch:
            return
        m = self.model
        out = m(tf.zeros((1, *m.input_shape[1:])), training=False)
        self.seen.append({
            "output": out.dtype.name,
            "hidden": m.get_layer("convnet_tiny").get_layer(self.hidden).compute_dtype,
            "head_output": m.get_layer(OUTPUT_LAYER).compute_dtype,
            "variables": sorted({v.dtype for v in m.weights}),
            "optimizer": type(m.optimizer).__name__,
            "global": keras.config.dtype_policy().name,
        })  # fmt: skip


@pytest.mark.parametrize(
    "precision, compute, optimizer",
    [("mixed_bfloat16", "bfloat16", "MultiOptimizer"),
     ("mixed_float16", "float16", "LossScaleOptimizer")],
)  # fmt: skip
def test_mixed_precision_fine_tune(precision, compute, optimizer):
    model = build_classifier("convnet_tiny", weights=None, image_size=16, num_classes=2)
    inspect = Inspect("block4_conv1")
    history = fine_tune(
        model, _bright_or_dark(), freeze_epochs=2, epochs=3, train_groups=3, lr_mult=10,
        learning_rate=3e-3, train_bn=True, precision=precision, callbacks=[inspect], verbose=0,
    )  # fmt: skip
    head, tuned = inspect.seen[0], inspect.seen[-1]
    for seen in (head, tuned):
        assert seen["output"] == "float32" and seen["head_output"] == "float32"
        assert seen["hidden"] == compute and seen["global"] == precision
        assert seen["variables"] == ["float32"]
    # The unfrozen stage's three groups learn at three rates: a MultiOptimizer (wrapped for
    # loss scaling under float16); the head stage has one optimizer.
    assert tuned["optimizer"] == optimizer
    if precision == "mixed_float16":
        assert head["optimizer"] == "LossScaleOptimizer"
        assert len(history.optimizer[-1]["learning_rates"]) == 3
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    assert history.performance["precision"] == precision
    # Afterwards: float32 again, for evaluation and export.
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("convnet_tiny").get_layer("block4_conv1").compute_dtype == "float32"
    assert model.predict(np.zeros((1, 16, 16, 3)), verbose=0).dtype == np.float32


def test_policy_restored_when_training_raises():
    model = build_classifier("convnet_tiny", weights=None, image_size=16, num_classes=2)

    class Boom(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fine_tune(model, _bright_or_dark(), precision="mixed_bfloat16", callbacks=[Boom()],
                  verbose=0)  # fmt: skip
    assert keras.config.dtype_policy().name == "float32"
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


def test_precision_scope_leaves_user_choices_alone():
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(3, name="mine", dtype="mixed_float16"),
        keras.layers.Dense(2, name="plain"),
    ])  # fmt: skip
    with precision_scope(model, "mixed_bfloat16"):
        assert model.get_layer("mine").compute_dtype == "float16"
        assert model.get_layer("plain").compute_dtype == "bfloat16"
    assert model.get_layer("mine").dtype_policy.name == "mixed_float16"


@pytest.mark.processes
def test_xla_training_step_on_request_and_what_keras_did_is_recorded():
    # A fresh process: op determinism (which a run turns on, process-wide) makes Keras
    # decline XLA, and the record must say what was used.
    code = (
        "import warnings, numpy as np, tensorflow as tf\n"
        "from tfinetune import build_classifier, fine_tune\n"
        "ds = tf.data.Dataset.from_tensor_slices((np.zeros((8, 16, 16, 3), 'f4'), [0, 1] * 4))"
        ".batch(4)\n"
        "for deterministic in (False, True):\n"
        "    if deterministic:\n"
        "        tf.config.experimental.enable_op_determinism()\n"
        "    m = build_classifier('convnet_tiny', weights=None, image_size=16)\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        h = fine_tune(m, ds, freeze_epochs=1, epochs=0, jit_compile=True, verbose=0)\n"
        "    said = any('XLA was asked for' in str(w.message) for w in caught)\n"
        "    print(m.jit_compile, h.performance['jit_compile'], said)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")  # fmt: skip
    assert out[:2] == ["True True False", "False False True"], out


@pytest.mark.parametrize(
    "device, capability, precision, xla",
    [("gpu", (8, 6), "mixed_bfloat16", True), ("gpu", (7, 5), "mixed_float16", True),
     ("gpu", (6, 1), "float32", True), ("tpu", None, "mixed_bfloat16", True),
     ("cpu", None, "float32", False)],
)  # fmt: skip
def test_auto_per_device(device, capability, precision, xla):
    policy = resolve_performance(device=device, capability=capability)
    assert (policy.precision, policy.jit_compile) == (precision, xla)
    assert policy.loss_scaling == (precision == "mixed_float16")
    given = resolve_performance("mixed_float16", "false", device=device, capability=capability)
    assert (given.precision, given.jit_compile, given.reason) == (
        "mixed_float16",
        False,
        "as given",
    )


def test_bad_policy_values_are_named():
    with pytest.raises(ValueError, match="Unknown precision 'half'"):
        resolve_performance("half")
    with pytest.raises(ValueError, match="jit_compile must be 'auto', True or False"):
        resolve_performance("auto", "yes")


def test_cli_records_the_policy(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "train", "--data", str(tiny_folder), "--backbone", "convnet_tiny", "--weights", "none",
        "--image-size", "32", "--epochs", "1", "--freeze-epochs", "1", "--quiet",
        "--precision", "mixed_bfloat16", "--jit-compile", "false", "--strategy", "default",
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    performance = json.loads((out / "history.json").read_text())["performance"]
    assert performance["precision"] == "mixed_bfloat16" and performance["jit_compile"] is False
    assert performance["replicas"] == 1 and performance["global_batch"] == 32
    assert 'precision = "mixed_bfloat16"' in (out / "config.toml").read_text()


def test_cli_refuses_a_bad_precision_before_work(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "e.toml"
    config.write_text(f'[data]\ntrain = "{tiny_folder}"\n[performance]\nprecision = "fp8"\n')
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "performance.precision is 'fp8'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_doctor(capsys):
    assert main(["doctor", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["auto_policy"]["precision"] == resolve_performance().precision
    assert facts["versions"]["tensorflow"] == tf.__version__
    assert "tensorflow_hub" in facts["imports"]
    assert main(["doctor"]) == 0
    assert "auto policy: precision" in capsys.readouterr().out


def test_efficientnet_trains_under_float16():
    # EfficientNet rescales and normalises inside the backbone; under float16 those layers
    # compute in float16 too, and the loss must stay finite through both stages.
    model = build_classifier("efficientnet_b0", weights=None, image_size=32, num_classes=2)
    history = fine_tune(
        model, _bright_or_dark(16, size=32), freeze_epochs=1, epochs=1, train_groups=2,
        precision="mixed_float16", verbose=0,
    )  # fmt: skip
    assert np.all(np.isfinite(history.history["loss"])), history.history["loss"]
    probabilities = model.predict(_bright_or_dark(8, size=32), verbose=0)
    assert probabilities.dtype == np.float32 and np.allclose(
        probabilities.sum(axis=1), 1, atol=1e-5
    )


def test_a_stop_request_interrupts_at_the_next_batch():
    # What the CLI's signal handler also does, for an interrupt lost in a destructor.
    from tfinetune.training.guards import STOP_REQUESTED, request_stop

    class Request(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                request_stop()

    model = build_classifier("convnet_tiny", weights=None, image_size=16, num_classes=2)
    seen = []
    try:
        with pytest.raises(KeyboardInterrupt):
            fine_tune(model, _bright_or_dark(), freeze_epochs=1, epochs=0, verbose=0,
                      callbacks=[Request(), keras.callbacks.LambdaCallback(
                          on_train_batch_end=lambda b, logs: seen.append(b))])  # fmt: skip
    finally:
        STOP_REQUESTED.clear()
    assert seen == [0]  # batch 1's end never reached the later callbacks


GPU_RUN = """
import json, sys
from pathlib import Path
from tfinetune.training import performance

# A described GPU (an H200: compute capability 9.0); the step itself runs on this CPU.
performance.device_kind = lambda: "gpu"
performance.gpu_compute_capability = lambda: (9, 0)

import tensorflow as tf
enabled = []  # TensorFlow has no public "is determinism on": note the call instead
turn_on = tf.config.experimental.enable_op_determinism
tf.config.experimental.enable_op_determinism = lambda: (enabled.append(True), turn_on())[1]

from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.overrides import apply_flags
from tfinetune.runs.train import train_run

root = Path(sys.argv[1])
data = write_shapes_folder(root / "data", ["ring", "star"], 6, size=16)
flags = {"data": data, "backbone": "convnet_tiny", "weights": "none", "image_size": 16,
         "batch_size": 4, "epochs": 1, "freeze_epochs": 1, **json.loads(sys.argv[2])}
experiment = apply_flags(Experiment(), flags).with_values({"export.saved_model": False})
run = train_run(experiment, root / "run", verbose=0)
record = json.loads((root / "run" / "history.json").read_text())["performance"]
print(json.dumps({"record": record, "model_jit": bool(run.model.jit_compile),
                  "determinism": bool(enabled)}))
"""


def _train_on_a_described_gpu(tmp_path, **flags):
    done = subprocess.run(
        [sys.executable, "-c", GPU_RUN, str(tmp_path), json.dumps(flags)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.processes
def test_the_default_train_on_a_gpu_compiles_with_xla_and_mixed_precision(tmp_path):
    facts = _train_on_a_described_gpu(tmp_path)
    record = facts["record"]
    assert record["device"] == "gpu" and record["precision"] == "mixed_bfloat16"
    # read back from the model Keras compiled, not copied from the request
    assert record["jit_compile"] is True and facts["model_jit"] is True
    assert record["deterministic_ops"] is False and not facts["determinism"]


@pytest.mark.processes
def test_determinism_asked_for_on_a_gpu_is_kept_and_the_run_records_xla_off(tmp_path):
    facts = _train_on_a_described_gpu(tmp_path, deterministic=True)
    record = facts["record"]
    assert record["deterministic_ops"] is True and facts["determinism"]
    assert record["jit_compile"] is False and facts["model_jit"] is False
    assert record["precision"] == "mixed_bfloat16"  # precision is not what determinism costs
