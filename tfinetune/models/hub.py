"""A Keras 3 layer around a TF2 SavedModel from TF Hub, Kaggle or a local folder, trainable.

`tensorflow_hub.KerasLayer` is a Keras 2 object and fails inside Keras 3 models. `HubLayer`
is a plain Keras 3 layer: the SavedModel's own variables are its weights (so `fit` trains
exactly what the SavedModel computes with, and `.keras` files store them), `training`
reaches the SavedModel when it was traced with it, and inputs are cast to float32 at the
boundary under mixed precision.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf
from keras import ops

from tfinetune.models.specs import BackboneSpec

HUB_PREFIX = "hub:"
_RANGES = {(0.0, 1.0): "unit", (-1.0, 1.0): "tf", (0.0, 255.0): "none"}


def resolve_handle(handle: str | os.PathLike) -> str:
    """The local folder of a SavedModel: a path as it is, or a TF Hub / Kaggle handle resolved.

    Handles are resolved by `tensorflow_hub.resolve`, which downloads them once into the TF
    Hub cache (`$TFHUB_CACHE_DIR`) or finds them there.

    Args:
        handle: a local folder, a `https://tfhub.dev/...` or `https://www.kaggle.com/models/...`
            handle.

    Example:
    >>> import tempfile
    >>> resolve_handle(tempfile.gettempdir()) == tempfile.gettempdir()
    True
    """
    if os.path.isdir(handle):
        return str(handle)
    text = str(handle)
    if "://" not in text:
        raise FileNotFoundError(
            f"No SavedModel folder at {text!r}. Pass a local SavedModel folder or a TF Hub / "
            "Kaggle model handle (https://...)."
        )
    import tensorflow_hub  # only for handles: importing it costs time and is not needed else

    return tensorflow_hub.resolve(text)


def load_hub_object(handle: str | os.PathLike):
    """Load a TF2 SavedModel and check that it can be called on images.

    Args:
        handle: a local folder or a TF Hub / Kaggle handle.

    Example:
    >>> load_hub_object("/no/such/model")  # doctest: +SKIP
    FileNotFoundError: No SavedModel folder at '/no/such/model'. ...
    """
    path = resolve_handle(handle)
    if not (Path(path) / "saved_model.pb").is_file():
        raise ValueError(
            f"{str(handle)!r} is not a SavedModel: {path} has no saved_model.pb. Pass the folder "
            "that tf.saved_model.save wrote (TF2 format, as TF Hub publishes)."
        )
    loaded = tf.saved_model.load(path)
    if not callable(loaded) or not getattr(loaded.__call__, "concrete_functions", None):
        raise ValueError(
            f"The SavedModel {str(handle)!r} has no callable `__call__` (a TF2 'reusable "
            f"SavedModel'); its signatures are {sorted(loaded.signatures)}. Use a TF Hub TF2 "
            "model, or export yours with a tf.function `__call__`."
        )
    return loaded


def fixed_input_sizes(loaded) -> set[tuple[int, int]]:
    """The `(height, width)` sizes a SavedModel's `__call__` was traced for (empty: any size).

    Args:
        loaded: what `load_hub_object` returned.
    """
    sizes = set()
    for function in loaded.__call__.concrete_functions:
        args, _ = function.structured_input_signature
        shape = getattr(args[0], "shape", None) if args else None
        if shape is None or shape.rank != 4 or None in shape[1:3]:
            return set()
        sizes.add((int(shape[1]), int(shape[2])))
    return sizes


def _accepts_training(loaded) -> bool:
    for function in loaded.__call__.concrete_functions:
        args, kwargs = function.structured_input_signature
        if len(args) > 1 or "training" in kwargs:
            return True
    return False


@keras.saving.register_keras_serializable(package="tfinetune")
class HubLayer(keras.layers.Layer):
    """A TF2 SavedModel (TF Hub, Kaggle or local) as a Keras 3 layer.

    Args:
        handle: a local SavedModel folder or a TF Hub / Kaggle handle.
        trainable: train the SavedModel's trainable variables in `fit`.
        input_range: the pixel range the model expects (TF Hub image models: `(0, 1)`).

    Example:
    >>> layer = HubLayer("path/to/feature_vector")  # doctest: +SKIP
    >>> keras.Sequential([keras.Input((224, 224, 3)), layer]).output_shape  # doctest: +SKIP
    (None, 1280)
    """

    def __init__(
        self,
        handle: str,
        trainable: bool = False,
        input_range: tuple[float, float] = (0.0, 1.0),
        **kwargs,
    ):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = str(handle)
        self.input_range = tuple(float(v) for v in input_range)
        self._loaded = load_hub_object(self.handle)
        self._training_arg = _accepts_training(self._loaded)
        trainable_ids = {id(v) for v in getattr(self._loaded, "trainable_variables", [])}
        # Keras 3 wraps a `tf.Variable` given as the initializer instead of copying it, so
        # these weights *are* the SavedModel's variables: `fit` trains what its functions
        # read. Assigned as an attribute, the list is tracked as the layer's weights.
        self.hub_weights = [
            keras.Variable(
                initializer=variable,
                trainable=id(variable) in trainable_ids,
                dtype=variable.dtype,
                shape=variable.shape,
                name=variable.name.split(":")[0].replace("/", "_"),
            )
            for variable in getattr(self._loaded, "variables", [])
        ]
        for weight in self.hub_weights:  # as Keras does for weights added to a frozen layer
            weight.trainable = weight.trainable and self.trainable
        self.built = True

    def call(self, inputs, training=None):
        images = ops.cast(inputs, "float32")
        if self._training_arg:
            outputs = self._loaded(images, training=bool(training) and self.trainable)
        else:
            outputs = self._loaded(images)
        if isinstance(outputs, dict):
            outputs = outputs.get("default", next(iter(outputs.values())))
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "input_range": self.input_range}


def hub_spec(handle: str, default_size: int = 224, input_range=(0.0, 1.0)) -> BackboneSpec:
    """A `BackboneSpec` for a TF Hub / Kaggle / local image feature-vector SavedModel.

    Args:
        handle: a local SavedModel folder or a TF Hub / Kaggle handle.
        default_size: the input size it was made for.
        input_range: the pixel range it expects; sets the classifier's normalisation.

    Example:
    >>> hub_spec("https://tfhub.dev/some/model/5").normalization
    'unit'
    """
    key = tuple(float(v) for v in input_range)
    if key not in _RANGES:
        raise ValueError(f"input_range must be one of {sorted(_RANGES)}. Received: {input_range!r}")

    def build(input_shape, weights=None):
        if weights not in (None, "imagenet"):
            raise ValueError(
                f"A hub backbone carries its own weights; pass weights=None or 'imagenet'. "
                f"Received: weights={weights!r}"
            )
        inputs = keras.Input(input_shape)
        layer = HubLayer(handle, input_range=key, name="hub")
        sizes = fixed_input_sizes(layer._loaded)
        if sizes and tuple(input_shape[:2]) not in sizes:
            height, width = sorted(sizes)[0]
            raise ValueError(
                f"The hub model {handle!r} takes {height}x{width} images only (its signature "
                f"is fixed); received {input_shape[0]}x{input_shape[1]}. Pass "
                f"image_size={height}."
            )
        return keras.Model(inputs, layer(inputs))

    return BackboneSpec(
        name="hub",
        builder=build,
        default_size=default_size,
        normalization=_RANGES[key],
        min_size=1,  # the SavedModel checks its own input shape
    )
