"""Heads: pooling, optional hidden layers, and an output for one label, several, or a number.

The task a model was built for is read back from its output layer (`task_of`), so a model
loaded from a file still gets the right loss, metrics, report and serving outputs.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import keras

from tfinetune.models.options import POOLINGS, HeadOptions

HEAD_PREFIX = "head_"
OUTPUT_LAYER = f"{HEAD_PREFIX}predictions"
SCALING_LAYER = f"{HEAD_PREFIX}target_scaling"
TASKS = ("single_label", "multi_label", "regression")
_ACTIVATIONS = {"single_label": "softmax", "multi_label": "sigmoid", "regression": None}


@keras.saving.register_keras_serializable(package="tfinetune")
class TargetScaling(keras.layers.Layer):
    """`outputs * std + mean`: a regression head's outputs in the target's own units.

    The dense layer below it learns the standardised target, which keeps the first steps of
    training well scaled whatever the units; the model still predicts in the user's units.

    Args:
        mean: the training targets' mean.
        std: the training targets' standard deviation (above 0).

    Example:
    >>> float(TargetScaling(10.0, 2.0)(keras.ops.ones((1, 1)))[0, 0])
    12.0
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, **kwargs) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not std > 0:
            raise ValueError(f"The target scale must be above 0. Received: std={std!r}")
        self.mean, self.std = float(mean), float(std)

    def call(self, inputs):
        return keras.ops.cast(inputs, "float32") * self.std + self.mean

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="tfinetune")
class Predictions(keras.layers.Dense):
    """A head's output layer: a `Dense` that also carries what the model predicts.

    `info` holds JSON-ready facts about the outputs (see `set_model_info`): the class names
    (a regression model's target names), a multi-label model's thresholds, the temperature
    folded into the weights, how images were resized. It is part of the layer's config, so it
    travels in every `.keras` file and a bare model file can be evaluated and served.

    Args:
        *args: `keras.layers.Dense`'s arguments.
        info: the facts (JSON-ready).
        **kwargs: `keras.layers.Dense`'s keyword arguments.

    Example:
    >>> layer = Predictions(2, info={"class_names": ["cat", "dog"]})
    >>> layer.get_config()["info"]
    {'class_names': ['cat', 'dog']}
    """

    def __init__(self, *args, info: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.info = dict(info or {})

    def get_config(self) -> dict:
        return {**super().get_config(), "info": json.loads(json.dumps(self.info))}


def model_info(model: keras.Model) -> dict:
    """What a model says of its outputs (`Predictions.info`); empty for other models.

    Args:
        model: a model made by `build_classifier`, or any Keras model.

    Example:
    >>> x = keras.Input((4,))
    >>> m = keras.Model(x, build_head(x, 2))
    >>> set_model_info(m, class_names=["no", "yes"])
    >>> model_info(m)["class_names"]
    ['no', 'yes']
    """
    layer = _output_layer(model)
    return json.loads(json.dumps(getattr(layer, "info", {}) or {}))


def set_model_info(model: keras.Model, **facts) -> None:
    """Record facts about a model's outputs in the model itself (see `Predictions`).

    Args:
        model: a model made by `build_classifier` (a `Predictions` output layer).
        **facts: JSON-ready values, for example `class_names=[...]`, `resize="crop"`.
    """
    layer = _output_layer(model)
    if not isinstance(layer, Predictions):
        raise ValueError(
            f"The model {model.name!r} has no tfinetune head (its output layer is "
            f"{layer.name!r}), so it cannot carry its class names; keep a labels.txt beside it."
        )
    layer.info = {**layer.info, **json.loads(json.dumps(facts))}


def _output_layer(model: keras.Model) -> keras.layers.Layer:
    return model.get_layer(OUTPUT_LAYER) if _has_layer(model, OUTPUT_LAYER) else model.layers[-1]


def check_task(task: str) -> str:
    """`task` if it is one of `TASKS`, else a clear error.

    Args:
        task: "single_label", "multi_label" or "regression".

    Example:
    >>> check_task("regression")
    'regression'
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Use one of: {', '.join(TASKS)}.")
    return task


def head_options_of(head: HeadOptions | None, changes: dict[str, Any]) -> HeadOptions:
    """`head` (default `HeadOptions()`) with `changes`, each the name of one of its fields.

    Args:
        head: the head options, or None.
        changes: field name -> value, as keyword arguments give them.

    Example:
    >>> head_options_of(None, {"pooling": "max"}).pooling
    'max'
    """
    names = {f.name for f in dataclasses.fields(HeadOptions)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise TypeError(
            f"Unknown head option(s) {', '.join(unknown)}: pass head=HeadOptions(...) with "
            f"{', '.join(sorted(names))}."
        )
    head = head if head is not None else HeadOptions()
    return dataclasses.replace(head, **changes) if changes else head


def build_head(
    features: keras.KerasTensor,
    num_outputs: int,
    *,
    task: str = "single_label",
    head: HeadOptions | None = None,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    **head_options: Any,
) -> keras.KerasTensor:
    """Attach a head to a feature map: pooling, hidden layers, and the task's output.

    Every layer is named `head_*`, so the head is one layer group. The output computes in
    float32 so probabilities (and numbers) stay exact under a mixed-precision policy.

    Args:
        features: a `[batch, h, w, c]` feature map (or `[batch, c]` features).
        num_outputs: classes (at least 2 for "single_label", 1 for "multi_label"), or
            targets for "regression".
        task: "single_label" (softmax), "multi_label" (one sigmoid per class) or
            "regression" (linear, scaled back to the target's units).
        head: the head's shape: pooling, hidden layers, dropout, BatchNormalization (see
            `HeadOptions`; default: `HeadOptions()`).
        target_mean: regression: the training targets' mean, added back to the output.
        target_std: regression: the targets' standard deviation, multiplied back in.
        **head_options: `HeadOptions` fields by name, changing `head`
            (`pooling="max"`).

    Example:
    >>> x = keras.Input((4, 4, 8))
    >>> keras.Model(x, build_head(x, 3, pooling="avgmax", hidden_units=[16])).output_shape
    (None, 3)
    """
    check_task(task)
    head = head_options_of(head, head_options)
    pooling, dropout = head.pooling, head.dropout
    fewest = 2 if task == "single_label" else 1
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < fewest:
        what = "classes" if task != "regression" else "targets"
        raise ValueError(
            f"A {task} head needs at least {fewest} {what}. Received: num_classes={num_outputs!r}"
        )
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}. Received: pooling={pooling!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")

    # === Layers ===
    x = features
    if len(x.shape) in (3, 4):
        x = _pool(x, pooling)
    for i, units in enumerate(head.hidden_units):
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"{HEAD_PREFIX}dense_{i}")(x)
        if head.batch_norm:
            x = keras.layers.BatchNormalization(name=f"{HEAD_PREFIX}bn_{i}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    outputs = Predictions(
        num_outputs, activation=_ACTIVATIONS[task], dtype="float32", name=OUTPUT_LAYER
    )(x)
    if task == "regression":
        outputs = TargetScaling(target_mean, target_std, name=SCALING_LAYER)(outputs)
    return outputs


@keras.saving.register_keras_serializable(package="tfinetune")
class AttentionPooling(keras.layers.Layer):
    """A weighted mean over time: a learned score per frame, softmax-normalised over frames.

    Args:
        **kwargs: Keras layer arguments.

    Example:
    >>> tuple(AttentionPooling()(keras.ops.ones((2, 5, 3))).shape)
    (2, 3)
    """

    def build(self, input_shape):
        self.score = keras.layers.Dense(1, name="score")
        self.score.build(input_shape)

    def call(self, inputs):
        weights = keras.ops.softmax(self.score(inputs), axis=1)
        return keras.ops.sum(weights * inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def _pool(x: keras.KerasTensor, pooling: str) -> keras.KerasTensor:
    frames = len(x.shape) == 3
    if pooling == "attention":
        if not frames:
            raise ValueError(
                "pooling='attention' weighs the frames of a sequence ([batch, time, channels]); "
                "for a feature map use 'avg', 'max' or 'avgmax'."
            )
        return AttentionPooling(name=f"{HEAD_PREFIX}pool")(x)
    layers = keras.layers
    average_type = layers.GlobalAveragePooling1D if frames else layers.GlobalAveragePooling2D
    max_type = layers.GlobalMaxPooling1D if frames else layers.GlobalMaxPooling2D
    if pooling == "avg":
        return average_type(name=f"{HEAD_PREFIX}pool")(x)
    if pooling == "max":
        return max_type(name=f"{HEAD_PREFIX}pool")(x)
    average = average_type(name=f"{HEAD_PREFIX}pool")(x)
    return layers.Concatenate(name=f"{HEAD_PREFIX}avgmax")(
        [average, max_type(name=f"{HEAD_PREFIX}max_pool")(x)]
    )


def task_of(model: keras.Model) -> str:
    """The task a model's head was built for, read from its output layer.

    A model without a tfinetune head counts as "single_label" when its output is a softmax,
    "multi_label" for a sigmoid, else "regression".

    Args:
        model: a model made by `build_classifier` (or any Keras model).

    Example:
    >>> x = keras.Input((4,))
    >>> task_of(keras.Model(x, build_head(x, 2, task="multi_label")))
    'multi_label'
    """
    layer = model.get_layer(OUTPUT_LAYER) if _has_layer(model, OUTPUT_LAYER) else model.layers[-1]
    if _has_layer(model, SCALING_LAYER):
        return "regression"
    activation = getattr(getattr(layer, "activation", None), "__name__", "softmax")
    return {"softmax": "single_label", "sigmoid": "multi_label"}.get(activation, "regression")


def apply_temperature(model: keras.Model, temperature: float) -> None:
    """Divide a single-label model's logits by `temperature`, in its output layer's weights.

    `softmax((x W + b) / T) = softmax(x (W / T) + b / T)`: the kernel and bias of the
    softmax layer are scaled, so the model itself (its `.keras` file, every export and
    serving signature) gives the calibrated probabilities, and its top class is unchanged.

    Args:
        model: a model whose output layer is a softmax `Dense` (a single-label head).
        temperature: above 0 (see `tfinetune.evaluation.calibration.fit_temperature`).

    Example:
    >>> x = keras.Input((2,))
    >>> m = keras.Model(x, build_head(x, 2))
    >>> apply_temperature(m, 1e9)
    >>> [round(float(v), 3) for v in m(keras.ops.ones((1, 2)))[0]]
    [0.5, 0.5]
    """
    if not temperature > 0:
        raise ValueError(f"A temperature must be above 0. Received: temperature={temperature!r}")
    layer = model.get_layer(OUTPUT_LAYER) if _has_layer(model, OUTPUT_LAYER) else model.layers[-1]
    if task_of(model) != "single_label" or not isinstance(layer, keras.layers.Dense):
        raise ValueError(
            "Only a single-label model (a softmax Dense output) takes a temperature; "
            f"{model.name!r} has a {task_of(model)} output {layer.name!r}."
        )
    for weight in layer.weights:
        weight.assign(keras.ops.cast(weight.value, weight.dtype) / temperature)
    if isinstance(layer, Predictions):  # the model says which temperature it holds
        layer.info = {**layer.info, "temperature": layer.info.get("temperature", 1.0) * temperature}


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
