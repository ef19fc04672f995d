"""Run under KERAS_BACKEND=jax by tests/test_jax_backend.py; prints one JSON line of facts.

Trains a tiny classifier with `fine_tune` on NumPy arrays (no TensorFlow needed), checks
what must hold inside the process, and reports the rest for the test to assert.
"""

from __future__ import annotations

import json
import sys
import tempfile

import keras
import numpy as np

import tfinetune
from tfinetune import Stage, build_classifier, fine_tune, layer_groups

STAGES = [Stage(1, 1, 1e-3, "head"), Stage(2, 3, 1e-3, "top", lr_mult=10)]


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C after the first epoch of the second stage (global epoch 1)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def arrays():
    rng = np.random.default_rng(0)
    x = rng.random((48, 32, 32, 3), dtype="float32") * 255
    return x, (x.mean(axis=(1, 2, 3)) > 127).astype("int32")


class Batches(keras.utils.PyDataset):
    """The arrays in fixed batches of 8, in order (so a resumed epoch sees what it saw)."""

    def __init__(self):
        super().__init__()
        self.x, self.y = arrays()

    def __len__(self):
        return len(self.x) // 8

    def __getitem__(self, index):
        part = slice(8 * index, 8 * index + 8)
        return self.x[part], self.y[part]


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def weights_by_group(model):
    return {g.name: [numpy(w) for layer in g.layers for w in layer.weights]
            for g in layer_groups(model)}  # fmt: skip


def train(folder, resume=False, callbacks=(), stages=STAGES, data=None):
    keras.utils.set_random_seed(0)
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    x, y = arrays()
    start = weights_by_group(model)
    history = fine_tune(model, (x, y) if data is None else data, (x[:16], y[:16]),
                        stages=stages, verbose=0, checkpoint_dir=folder, resume=resume,
                        callbacks=callbacks)  # fmt: skip
    return model, history, start


def options() -> dict:
    """The other training options, each once on JAX: what they report, for the test."""
    from tfinetune import apply_temperature
    from tfinetune.training.distillation import Distiller

    x, y = arrays()
    found = {}
    keras.utils.set_random_seed(1)
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32, mirror=True)
    history = fine_tune(
        model, (x, y), stages=[Stage(1, 1, 1e-3, "head"),
                               Stage(1, "all", 1e-3, "all", lr_decay=0.5,
                                     schedule="warmup_cosine")],
        precision="mixed_bfloat16", gradient_accumulation_steps=2, label_smoothing=0.1,
        verbose=0,
    )  # fmt: skip
    found["mixed"] = {"precision": history.performance["precision"],
                      "iterations": [s["optimizer"]["iterations"] for s in
                                     history.to_dict()["stages"]],
                      "losses": history.history["loss"]}  # fmt: skip
    probabilities = numpy(model.predict(x[:4], verbose=0))  # mirrored: two views averaged
    apply_temperature(model, 2.0)
    softer = numpy(model.predict(x[:4], verbose=0))
    found["mirror_and_temperature"] = {
        "rows_sum_to_one": bool(np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)),
        "float32_output": str(probabilities.dtype),
        "softer": bool((np.abs(softer - 0.5) <= np.abs(probabilities - 0.5) + 1e-7).all()),
    }
    student = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    distilled = fine_tune(Distiller(student, model), (x, y), stages=[Stage(1, 1, 1e-3)],
                          verbose=0)  # fmt: skip
    found["distillation_losses"] = distilled.history["loss"]
    return found


def main() -> None:
    facts = {"backend": keras.config.backend()}
    # First, before Keras's set_random_seed (which imports TensorFlow where installed, to
    # seed it too): tfinetune builds and trains on arrays without importing TensorFlow.
    x, y = arrays()
    fine_tune(build_classifier("convnet_tiny", 2, weights=None, image_size=32), (x, y),
              stages=STAGES[:1], verbose=0)  # fmt: skip
    facts["tensorflow_imported"] = "tensorflow" in sys.modules
    folder = tempfile.mkdtemp()
    head_only, _, start = train(folder + "/head", stages=STAGES[:1])
    after_head = weights_by_group(head_only)
    facts["unchanged_after_head_stage"] = [
        name for name in start
        if all(np.array_equal(a, b) for a, b in zip(start[name], after_head[name], strict=True))
    ]  # fmt: skip
    model, history, start = train(folder + "/whole")
    end = weights_by_group(model)
    facts["unchanged_after_both"] = [
        name for name in start
        if all(np.array_equal(a, b) for a, b in zip(start[name], end[name], strict=True))
    ]  # fmt: skip
    facts["mean_step"] = {  # mean |change| of each group's kernels (trainable, not BN)
        name: float(np.mean([np.abs(a - b).mean() for a, b, w in zip(
            start[name], end[name], [w for g in layer_groups(model) if g.name == name
                                     for layer in g.layers for w in layer.weights], strict=True)
            if w.trainable]))
        for name in ("block3", "block4")
    }  # fmt: skip
    record = history.to_dict()
    facts["performance"] = record["performance"]
    facts["averaged"] = [s["optimizer"]["ends_on_averaged_weights"] for s in record["stages"]]
    facts["losses"] = history.history["loss"]
    # Keras's own fit again after fine_tune (weight averaging left buffers shared before)
    x, y = arrays()
    facts["fit_after"] = model.fit(x, y, epochs=1, verbose=0).history["loss"]
    # A checkpoint written on JAX, resumed on JAX, ends where the whole run ended (a
    # PyDataset in a fixed order, so that both runs see the same batches).
    whole, whole_history, _ = train(folder + "/ordered", data=Batches())
    facts["ordered_losses"] = whole_history.history["loss"]
    try:
        train(folder + "/cut", callbacks=[Interrupt()], data=Batches())
        facts["interrupted"] = False
    except KeyboardInterrupt:
        facts["interrupted"] = True
    resumed, resumed_history, _ = train(folder + "/cut", resume=True, data=Batches())
    facts["resumed_losses"] = resumed_history.history["loss"]
    facts["resumed_max_difference"] = max(
        float(np.abs(numpy(a) - numpy(b)).max())
        for a, b in zip(whole.weights, resumed.weights, strict=True)
    )
    facts["options"] = options()
    facts["tfinetune"] = tfinetune.__version__
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
