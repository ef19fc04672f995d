"""Run under KERAS_BACKEND=jax with two host devices by tests/test_jax_backend.py.

`python jax_two_devices.py one|two OUT.npz`: the same fine_tune on one device, or data
parallel over two (`keras.distribution.DataParallel`); the weights go to OUT.npz and one
JSON line of facts to stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys

import jax

# One step at a time on the CPU. Seen once in CI (a loaded 2-core machine): an all-reduce
# whose second device never joined, until the test's 600 s ran out. The likely cause is
# asynchronous dispatch: the CPU client's small thread pool held by one device's part of a
# step waiting in the all-reduce and by the next step waiting for its inputs.
with contextlib.suppress(AttributeError):  # jax before 0.4.32 had no such option
    jax.config.update("jax_cpu_enable_async_dispatch", False)

import keras
import numpy as np

from tfinetune import Stage, build_classifier, fine_tune


class Batches(keras.utils.PyDataset):
    """64 examples in fixed batches of 16 (8 per device when there are two)."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.random((64, 32, 32, 3), dtype="float32") * 255
        self.y = (self.x.mean(axis=(1, 2, 3)) > 127).astype("int32")

    def __len__(self):
        return 4

    def __getitem__(self, index):
        part = slice(16 * index, 16 * index + 16)
        return self.x[part], self.y[part]


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    devices = keras.distribution.list_devices()
    if mode == "two":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    keras.utils.set_random_seed(0)
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    stages = [Stage(1, 1, 1e-2, "head"), Stage(2, "all", 1e-3, "all", lr_mult=3)]
    history = fine_tune(model, Batches(), stages=stages, verbose=0)
    np.savez(out, *[keras.ops.convert_to_numpy(w) for w in model.weights])
    weight = model.weights[0].value  # a jax.Array: on which devices it lives
    print(json.dumps({"devices": len(devices), "replicas": history.performance["replicas"],
                      "weight_devices": len(weight.sharding.device_set),
                      "losses": history.history["loss"]}))  # fmt: skip


if __name__ == "__main__":
    main()
