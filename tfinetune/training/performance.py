"""The performance policy: which precision and whether XLA compiles the training step.

`precision="auto"` and `jit_compile="auto"` choose per device:

- a GPU with compute capability 8.0 or more (A100, L4, RTX 30xx on): mixed bfloat16 and XLA
  (bfloat16 has float32's range, so no loss scaling is needed);
- an older GPU with tensor cores (7.x: V100, T4): mixed float16 with loss scaling, and XLA;
- a GPU without tensor cores: float32, with XLA;
- a TPU: mixed bfloat16 (XLA always runs there);
- a CPU: float32 and no XLA. Both were measured on a CPU that has AVX512_BF16 and AMX
  (`benchmarks/train_step.py`): see `CPU_EVIDENCE`.

The policy applies to the model for the duration of `fine_tune` only: each layer computes
in the chosen precision (variables stay float32; the head's output layer stays float32 so
probabilities are exact), the global Keras dtype policy is set too, and both are put back
afterwards, even when training raises. The trained model is float32 again for evaluation
and export.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import keras

from tfinetune.models.heads import OUTPUT_LAYER, SCALING_LAYER

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# Why `auto` keeps float32 and no XLA on a CPU (measured, see benchmarks/README.md).
CPU_EVIDENCE = (
    "on a CPU, float32 without XLA measured fastest (benchmarks/train_step.py): "
    "mixed_bfloat16 took 1.4x the CPU time per image, with AVX512_BF16 and AMX present, "
    "and XLA 10x"
)
# Layers that keep float32: the head's output (and its rescaling for regression).
FLOAT32_LAYERS = (OUTPUT_LAYER, SCALING_LAYER)


@dataclass(frozen=True)
class Performance:
    """A resolved performance policy.

    Args:
        precision: "float32", "mixed_float16" or "mixed_bfloat16".
        jit_compile: compile the training step with XLA.
        device: "gpu", "tpu" or "cpu": what the choice was made for.
        reason: why `auto` chose it (or "as given").

    Example:
    >>> Performance("float32", False, "cpu", "as given").loss_scaling
    False
    """

    precision: str
    jit_compile: bool
    device: str
    reason: str

    @property
    def loss_scaling(self) -> bool:
        """Whether the optimizer needs dynamic loss scaling (float16 only)."""
        return self.precision == "mixed_float16"

    def describe(self) -> str:
        """One short line for the log, e.g. "cpu: float32, XLA off" (`reason` says why)."""
        return f"{self.device}: {self.precision}, XLA {'on' if self.jit_compile else 'off'}"

    def to_dict(self) -> dict:
        """The policy as a JSON-ready dict, saved with a run."""
        return {**asdict(self), "loss_scaling": self.loss_scaling}


def device_kind() -> str:
    """The accelerator Keras's backend sees: "tpu", "gpu" or "cpu".

    Example:
    >>> device_kind() in ("tpu", "gpu", "cpu")
    True
    """
    return _accelerators()[0]


def gpu_compute_capability() -> tuple[int, int] | None:
    """The lowest compute capability of the local GPUs, or None without a GPU.

    Example:
    >>> gpu_compute_capability() is None or len(gpu_compute_capability()) == 2
    True
    """
    found = _accelerators()[1]
    return min(found) if found else None


def _accelerators() -> tuple[str, list[tuple[int, int]]]:
    """The device kind and the GPUs' compute capabilities, asked of the backend in use."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        platforms = {d.platform for d in jax.devices()}
        if "tpu" in platforms:
            return "tpu", []
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        found = [_capability(getattr(d, "compute_capability", "")) for d in gpus]
        return ("gpu" if gpus else "cpu"), [c for c in found if c]
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return "cpu", []
        count = torch.cuda.device_count()
        return "gpu", [tuple(torch.cuda.get_device_capability(i)) for i in range(count)]
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu", []
    gpus = tf.config.list_physical_devices("GPU")
    found = [tuple(tf.config.experimental.get_device_details(g).get("compute_capability") or ())
             for g in gpus]  # fmt: skip
    return ("gpu" if gpus else "cpu"), [c for c in found if c]


def _capability(text: str) -> tuple[int, int] | None:
    """ "9.0" -> (9, 0); None for anything else."""
    major, _, minor = str(text).partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and minor.isdigit() else None


def resolve_performance(
    precision: str = "auto",
    jit_compile: bool | str = "auto",
    *,
    device: str | None = None,
    capability: tuple[int, int] | None = None,
) -> Performance:
    """Turn `precision` and `jit_compile` ("auto" or explicit) into a `Performance`.

    Args:
        precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16".
        jit_compile: "auto", True or False.
        device: the device to choose for (default: `device_kind()`).
        capability: the GPU's compute capability (default: the local GPUs').

    Example:
    >>> resolve_performance(device="cpu").precision
    'float32'
    >>> resolve_performance(device="gpu", capability=(7, 5)).describe()
    'gpu: mixed_float16, XLA on'
    """
    if isinstance(jit_compile, str) and jit_compile.lower() in ("true", "false"):
        jit_compile = jit_compile.lower() == "true"  # as a config file may spell it
    if precision not in PRECISIONS:
        raise ValueError(
            f"Unknown precision {precision!r}. Use one of: {', '.join(map(repr, PRECISIONS))}."
        )
    if jit_compile not in ("auto", True, False):
        raise ValueError(f"jit_compile must be 'auto', True or False. Received: {jit_compile!r}")
    device = device or device_kind()
    chosen, xla, reason = _auto_choice(device, capability)
    given = precision != "auto" and jit_compile != "auto"
    return Performance(
        precision=chosen if precision == "auto" else precision,
        jit_compile=xla if jit_compile == "auto" else bool(jit_compile),
        device=device,
        reason="as given" if given else reason,
    )


def resolve_determinism(deterministic: bool | str = "auto", device: str | None = None) -> bool:
    """Whether TensorFlow's ops run deterministically: `auto` means on a CPU only.

    Keras's TensorFlow trainer compiles without XLA while op determinism is on, so on a GPU
    or TPU determinism would cost the fast step: `auto` leaves it off there (ask for it
    with True, and XLA stays off, as the run records). On a CPU, where XLA is off anyway,
    `auto` keeps it on: the same seed gives the same numbers.

    Args:
        deterministic: "auto", True or False (or "true" / "false", as a file may spell it).
        device: the device to decide for (default: `device_kind()`).

    Example:
    >>> resolve_determinism(device="cpu"), resolve_determinism(device="gpu")
    (True, False)
    >>> resolve_determinism("true", device="gpu")
    True
    """
    if isinstance(deterministic, str) and deterministic.lower() in ("true", "false"):
        deterministic = deterministic.lower() == "true"
    if deterministic not in ("auto", True, False):
        raise ValueError(
            f"deterministic_ops must be 'auto', true or false. Received: {deterministic!r}"
        )
    if deterministic == "auto":
        return (device or device_kind()) == "cpu"
    return bool(deterministic)


def _auto_choice(device: str, capability: tuple[int, int] | None) -> tuple[str, bool, str]:
    if device == "tpu":
        return "mixed_bfloat16", True, "bfloat16 is the TPU's native precision"
    if device == "gpu":
        capability = capability or gpu_compute_capability() or (0, 0)
        cc = f"compute capability {capability[0]}.{capability[1]}"
        if capability >= (8, 0):
            return "mixed_bfloat16", True, f"{cc}: bfloat16 tensor cores, no loss scaling"
        if capability >= (7, 0):
            return "mixed_float16", True, f"{cc}: float16 tensor cores"
        return "float32", True, f"{cc}: no tensor cores"
    return "float32", False, CPU_EVIDENCE


def _layers_of(model: keras.Layer) -> Iterator[keras.Layer]:
    """Every layer inside `model`, nested models included (and the nested models themselves)."""
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers_of(layer)


@contextlib.contextmanager
def precision_scope(model: keras.Model, precision: str) -> Iterator[None]:
    """Run the model in `precision` inside the block; put every dtype policy back after it.

    Variables keep their dtype (float32): layers compute in the policy's compute dtype.
    Input layers, layers that set float32 for a reason (the head's output) and layers whose
    variables are not float32 are left alone.

    Args:
        model: a built model.
        precision: "float32", "mixed_float16" or "mixed_bfloat16".

    Example:
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="hidden"),
    ...                       keras.layers.Dense(1, dtype="float32", name=OUTPUT_LAYER)])
    >>> with precision_scope(m, "mixed_bfloat16"):
    ...     m.get_layer("hidden").compute_dtype, m.get_layer(OUTPUT_LAYER).compute_dtype
    ('bfloat16', 'float32')
    >>> m.get_layer("hidden").compute_dtype, keras.config.dtype_policy().name
    ('float32', 'float32')
    """
    saved_global = keras.config.dtype_policy()
    changed: list[tuple[keras.Layer, object]] = []
    try:
        if precision != "float32":
            keras.config.set_dtype_policy(precision)
            for layer in _layers_of(model):
                if _keeps_float32(layer):
                    continue
                changed.append((layer, layer.dtype_policy))
                layer.dtype_policy = precision
        yield
    finally:
        for layer, policy in reversed(changed):
            layer.dtype_policy = policy
        keras.config.set_dtype_policy(saved_global)


def _keeps_float32(layer: keras.Layer) -> bool:
    if isinstance(layer, keras.layers.InputLayer) or layer.name in FLOAT32_LAYERS:
        return True
    if layer.dtype_policy.name != "float32":  # the user chose this layer's policy
        return True
    return any(v.dtype != "float32" for v in layer.weights)


def loss_scaled(optimizer: keras.optimizers.Optimizer, performance: Performance):
    """The optimizer, wrapped in Keras's `LossScaleOptimizer` when float16 needs it.

    Args:
        optimizer: the stage's optimizer.
        performance: the policy in force.

    Example:
    >>> p = Performance("mixed_float16", False, "cpu", "as given")
    >>> type(loss_scaled(keras.optimizers.SGD(), p)).__name__
    'LossScaleOptimizer'
    """
    if performance.loss_scaling:
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
