"""A Keras 3 layer around a TF2 SavedModel from TF Hub, Kaggle or a local folder, trainable.

`tensorflow_hub.KerasLayer` is a Keras 2 object and fails inside Keras 3 models. `HubLayer`
is a plain Keras 3 layer: the SavedModel's own variables are its weights (so `fit` trains
exactly what the SavedModel computes with, and `.keras` files store them), `training`
reaches the SavedModel when it was traced with it, and inputs are cast to float32 at the
boundary under mixed precision.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import keras
import tensorflow as tf
from keras import ops

from tfinetune.models.hub_groups import make_blocks, used_variables
from tfinetune.models.specs import AUDIO_RATE, BackboneSpec

_RANGES = {(0.0, 1.0): "unit", (-1.0, 1.0): "tf", (0.0, 255.0): "none"}
_RESOLVED: dict[str, str] = {}  # handle -> its folder in the TF Hub cache, once per process


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
    if text not in _RESOLVED:
        import tensorflow_hub  # only for handles: importing it costs time, not needed else

        _RESOLVED[text] = tensorflow_hub.resolve(text)
    return _RESOLVED[text]


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


def _first_input(loaded):
    args, _ = loaded.__call__.concrete_functions[0].structured_input_signature
    return args[0] if args and isinstance(args[0], tf.TensorSpec) else None


def input_modality(loaded) -> str:
    """What a SavedModel's `__call__` takes: `"image"`, `"text"` or `"audio"` (a waveform).

    Images are `float32 [batch, height, width, 3]`, text a `string [batch]` of sentences
    (TF Hub text embeddings), a waveform one `float32 [samples]` clip (YAMNet's convention).

    Args:
        loaded: what `load_hub_object` returned.
    """
    spec = _first_input(loaded)
    if spec is not None and spec.dtype == tf.string:
        return "text"
    if spec is not None and spec.dtype.is_floating and spec.shape.rank == 1:
        return "audio"
    if spec is not None and spec.shape.rank == 4:
        return "image"
    raise ValueError(
        f"The SavedModel's `__call__` takes {spec!r}; tfinetune uses SavedModels that take "
        "images [batch, height, width, 3], sentences (a string [batch]) or one waveform "
        "(float32 [samples])."
    )


def _accepts_training(loaded) -> bool:
    for function in loaded.__call__.concrete_functions:
        args, kwargs = function.structured_input_signature
        if len(args) > 1 or "training" in kwargs:
            return True
    return False


def _probe(loaded, modality: str):
    """A small seeded input that exercises the model, to find its output width and the
    variables its output depends on."""
    if modality == "text":
        return tf.constant(["the first of a few probe sentences", "and the second one"])
    if modality == "audio":
        return tf.random.stateless_uniform([16000], seed=[1, 2], minval=-0.5, maxval=0.5)
    height, width = sorted(fixed_input_sizes(loaded) or {(224, 224)})[0]
    return tf.random.stateless_uniform([2, height, width, 3], seed=[1, 2])


@keras.saving.register_keras_serializable(package="tfinetune")
class HubLayer(keras.layers.Layer):
    """A TF2 SavedModel (TF Hub, Kaggle or local) for images, text or audio as a Keras 3 layer.

    Its variables are held in `blocks` (`HubBlock` layers named after the blocks in the
    variable names) so that staged unfreezing can train the top blocks only. Text models take
    a string per example; audio models (one waveform per call, as YAMNet) take `[batch,
    samples]` and return per-frame features `[batch, frames, width]`. A `.keras` file of a
    model holding this layer carries the SavedModel (Keras's asset hooks), so it loads on a
    machine that never had the original folder or network access.

    Args:
        handle: a local SavedModel folder or a TF Hub / Kaggle handle.
        trainable: train the SavedModel's trainable variables in `fit`.
        input_range: the pixel range an image model expects (TF Hub: `(0, 1)`).
        output: which output to use when the model returns several: a dict key or a tuple
            index (default: `"default"` or the first; for a waveform model returning three,
            the second: YAMNet's `scores, embeddings, log_mel_spectrogram`).
        group_pattern: a regular expression naming blocks in variable names (see
            `tfinetune.models.hub_groups.block_names`).
        modality: `"image"`, `"text"` or `"audio"`; with `width`, recorded in the config so
            that a `.keras` file can be read before its SavedModel is unpacked.
        width: the output's last dimension (see `modality`).

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
        output: int | str | None = None,
        group_pattern: str | None = None,
        modality: str | None = None,
        width: int | None = None,
        **kwargs,
    ):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = str(handle)
        self.input_range = tuple(float(v) for v in input_range)
        self.output_key, self.group_pattern = output, group_pattern
        self.modality, self.width = modality, width
        self._loaded, self._folder, self.blocks = None, None, []
        # A layer read back from a `.keras` file (its config names modality and width) takes its
        # SavedModel from the file (`load_assets`) unless the handle is a folder here.
        if modality is None or width is None or os.path.isdir(self.handle):
            self._attach(resolve_handle(self.handle))
        self.built = True

    @property
    def saved_model(self):
        """The loaded SavedModel (None until a `.keras` file's copy is unpacked)."""
        return self._loaded

    def build(self, input_shape=None):
        """Nothing to build: the SavedModel's variables are the weights (`_attach`)."""
        return None

    def _attach(self, folder: str) -> None:
        """Load the SavedModel in `folder` and make its variables this layer's weights."""
        self._folder = folder
        self._loaded = load_hub_object(folder)
        self.modality = input_modality(self._loaded)
        self._training_arg = _accepts_training(self._loaded)
        probe = _probe(self._loaded, self.modality)
        keep, output = used_variables(
            lambda x: self._select(self._run(x, False)), probe, self._loaded.variables
        )
        self.width = int(output.shape[-1])
        # Tracked as sublayers: `fit` trains them, `.keras` files store them.
        self.blocks = make_blocks(self._loaded, keep, self.group_pattern, self.name)
        for block in self.blocks:  # as Keras does for weights added to a frozen layer
            block.trainable = self.trainable

    def save_assets(self, dir_path: str) -> None:
        """Copy the SavedModel into a `.keras` file, which then loads on any machine."""
        if self._folder is None or not (Path(self._folder) / "saved_model.pb").is_file():
            raise FileNotFoundError(
                f"The SavedModel of the hub layer {self.name!r} is no longer at "
                f"{self._folder!r}, and a .keras file carries it. Restore that folder, or "
                "save the model while it is there."
            )
        shutil.copytree(self._folder, dir_path, dirs_exist_ok=True)

    def load_assets(self, dir_path: str) -> None:
        """Take the SavedModel from a `.keras` file when it was not loaded from the handle."""
        if self._loaded is not None:
            return
        if not (Path(dir_path) / "saved_model.pb").is_file():
            raise ValueError(
                f"This .keras file does not carry the SavedModel of its hub layer "
                f"{self.name!r} (from {self.handle!r}), and that folder is not here. Save the "
                "model again with tfinetune 0.1 or later, or restore the SavedModel folder."
            )
        # Keras deletes the folder it unpacked the file into: keep a copy for this process.
        folder = tempfile.mkdtemp(prefix="tfinetune-hub-")
        weakref.finalize(self, shutil.rmtree, folder, True)
        shutil.copytree(dir_path, folder, dirs_exist_ok=True)
        self._attach(folder)

    def compute_output_spec(self, inputs, training=None):
        if self._loaded is not None:
            return super().compute_output_spec(inputs, training=training)
        # Read back from a file, before `load_assets`: the shape its config recorded.
        frames = (None,) if self.modality == "audio" else ()
        return keras.KerasTensor((inputs.shape[0], *frames, self.width), self.compute_dtype)

    def _run(self, inputs, training: bool):
        if self._training_arg:
            return self._loaded(inputs, training=training)
        return self._loaded(inputs)

    def _select(self, outputs):
        if isinstance(outputs, dict):
            key = self.output_key if self.output_key is not None else "default"
            return outputs[key] if key in outputs else next(iter(outputs.values()))
        if isinstance(outputs, (tuple, list)):
            default = 1 if self.modality == "audio" and len(outputs) == 3 else 0
            return outputs[default if self.output_key is None else int(self.output_key)]
        return outputs

    def call(self, inputs, training=None):
        if self._loaded is None:
            raise ValueError(
                f"The hub layer {self.name!r} was made from its config alone and has no "
                f"SavedModel: {self.handle!r} is not a folder here. Load the model with "
                "keras.saving.load_model from its .keras file, which carries the SavedModel."
            )
        train = bool(training) and self.trainable
        if self.modality == "text":
            outputs = self._select(self._run(tf.reshape(inputs, [-1]), train))
        elif self.modality == "audio":
            outputs = tf.map_fn(
                lambda clip: self._select(self._run(clip, train)),
                ops.cast(inputs, "float32"),
                fn_output_signature=tf.TensorSpec([None, self.width], tf.float32),
            )
        else:
            outputs = self._select(self._run(ops.cast(inputs, "float32"), train))
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "handle": self.handle,
            "input_range": self.input_range,
            "output": self.output_key,
            "group_pattern": self.group_pattern,
            "modality": self.modality,
            "width": self.width,
        }


AUDIO_CLIP = 15600  # 0.975 s: one YAMNet frame of 96 log-mel rows


def hub_spec(
    handle: str,
    default_size: int = 224,
    input_range=(0.0, 1.0),
    modality: str | None = None,
) -> BackboneSpec:
    """A `BackboneSpec` for a TF Hub / Kaggle / local SavedModel for images, text or audio.

    Args:
        handle: a local SavedModel folder or a TF Hub / Kaggle handle.
        default_size: an image model's input size.
        input_range: the pixel range an image model expects; sets the normalisation.
        modality: `"image"`, `"text"` or `"audio"`; by default read from the SavedModel's
            `__call__` (which loads it, and downloads a handle once).

    Example:
    >>> hub_spec("https://tfhub.dev/some/model/5", modality="image").normalization
    'unit'
    """
    key = tuple(float(v) for v in input_range)
    if key not in _RANGES:
        raise ValueError(f"input_range must be one of {sorted(_RANGES)}. Received: {input_range!r}")
    modality = modality or input_modality(load_hub_object(handle))

    def build(input_shape, weights=None):
        if weights not in (None, "imagenet"):
            raise ValueError(
                f"A hub backbone carries its own weights; pass weights=None or 'imagenet'. "
                f"Received: weights={weights!r}"
            )
        inputs = keras.Input(
            input_shape, dtype="string" if modality == "text" else None, name=modality
        )
        layer = HubLayer(handle, input_range=key, name="hub")
        sizes = fixed_input_sizes(layer.saved_model) if modality == "image" else set()
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
        default_size=AUDIO_CLIP if modality == "audio" else default_size,
        normalization=_RANGES[key] if modality == "image" else "none",
        min_size=1,  # the SavedModel checks its own input shape
        modality=modality,
        sample_rate=AUDIO_RATE if modality == "audio" else None,
    )
