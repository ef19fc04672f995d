"""`BackboneSpec`: a backbone described by data, and how its layers split into groups."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only named in annotations: the catalogue lists without loading Keras
    import keras

# A backbone name that starts with this names a TF Hub handle or SavedModel folder.
HUB_PREFIX = "hub:"
# TF Hub audio models (YAMNet, TRILL, VGGish) take 16 kHz mono.
AUDIO_RATE = 16000

# Known TF Hub backbones by kind: (handle, what it takes and gives). Any TF2 SavedModel with
# one of these calling conventions works as `hub:<handle or folder>`; the first of each kind
# is the command line's default for that kind of data.
HUB_MODELS = {
    "text": [
        ("https://tfhub.dev/google/nnlm-en-dim50/2",
         "string [batch] sentences -> float32 [batch, 50]; embedding table in blocks"),
        ("https://tfhub.dev/google/nnlm-en-dim128/2",
         "string [batch] sentences -> float32 [batch, 128]"),
        ("https://tfhub.dev/google/universal-sentence-encoder/4",
         "string [batch] sentences -> float32 [batch, 512]"),
    ],
    "audio": [
        ("https://tfhub.dev/google/yamnet/1",
         "float32 [samples] 16 kHz mono in [-1, 1] -> embeddings [frames, 1024], a frame of "
         "0.96 s every 0.48 s; blocks layer1..layer14"),
    ],
    "image": [
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
         "float32 [batch, 224, 224, 3] in [0, 1] -> float32 [batch, 1280]; blocks block_1.."),
    ],
}  # fmt: skip


@dataclass(frozen=True)
class BackboneSpec:
    """What tfinetune needs to know about a feature extractor.

    Args:
        name: the catalogue name, also the name of the built backbone model.
        builder: called as `builder(input_shape=..., weights=...)` with `weights` None or
            `"imagenet"`; returns a `keras.Model` from normalised images to a feature map.
        default_size: the input size the pretrained weights were made for.
        normalization: the pixel normalisation the weights expect (see
            `tfinetune.models.normalization.MODES`).
        group_pattern: a regular expression searched in each layer name; its captured text
            names the block the layer belongs to. Consecutive layers with weights and the same
            block form one layer group, used for staged unfreezing.
        boundary_pattern: instead of `group_pattern`, for architectures whose layers have
            generated names: a layer whose name matches it closes the current group.
        keras_module: the `keras.applications` module whose `preprocess_input` the
            normalisation reproduces (checked by the tests).
        imagenet: whether ImageNet weights exist for it.
        min_size: the smallest input size the architecture accepts.
        weights_file: the name of the ImageNet weights file (no top) that Keras looks for in
            its cache, `{rows}` standing for the input size where the name depends on it.
        modality: what the backbone takes: `"image"` (pixels), `"text"` (a string per
            example) or `"audio"` (a mono waveform; `default_size` is its length in samples).
        sample_rate: an audio backbone's sample rate in Hz.

    Example:
    >>> spec = BackboneSpec("tiny", None, 64, "tf", group_pattern=r"^(block\\d+)_")
    >>> spec.default_size
    64
    """

    name: str
    builder: Callable[..., keras.Model] | None
    default_size: int
    normalization: str
    group_pattern: str | None = None
    boundary_pattern: str | None = None
    keras_module: str | None = None
    imagenet: bool = True
    min_size: int = 32
    weights_file: str | None = None
    modality: str = "image"
    sample_rate: int | None = None

    def weights_file_for(self, size: tuple[int, int]) -> str | None:
        """The weights file name Keras asks for at input size `size` (None: none known).

        Keras's MobileNets name the file after the input size, one of 96, 128, 160, 192 or
        224 (224 for any other size).

        Args:
            size: `(height, width)`.

        Example:
        >>> spec = BackboneSpec("m", None, 224, "tf", weights_file="m_{rows}.h5")
        >>> spec.weights_file_for((160, 160))
        'm_160.h5'
        """
        if self.weights_file is None:
            return None
        square = size[0] if size[0] == size[1] else None
        return self.weights_file.format(rows=square if square in (96, 128, 160, 192) else 224)

    @classmethod
    def from_model(
        cls,
        model: keras.Model,
        normalization: str,
        group_pattern: str | None = None,
        boundary_pattern: str | None = None,
    ) -> BackboneSpec:
        """Describe your own feature extractor (any `keras.Model` from images to features).

        Args:
            model: the backbone, with a fixed input shape `(height, width, 3)`.
            normalization: the pixel normalisation it expects (see `normalization.MODES`).
            group_pattern: see the class; without one the backbone is one layer group.
            boundary_pattern: see the class.

        Example:
        >>> from tfinetune.models.catalogue import convnet_tiny
        >>> spec = BackboneSpec.from_model(convnet_tiny((32, 32, 3)), "tf", r"^(block\\d+)_")
        >>> spec.name, spec.default_size
        ('convnet_tiny', 32)
        """
        shape = tuple(model.input_shape[1:])

        def build(input_shape, weights=None):
            if tuple(input_shape) != shape or weights not in (None, "imagenet"):
                raise ValueError(
                    f"The backbone {model.name!r} is built already, for input shape {shape} "
                    "with its own weights. "
                    f"Received: input_shape={input_shape}, weights={weights!r}"
                )
            return model

        return cls(
            model.name, build, shape[0], normalization, group_pattern, boundary_pattern,
            imagenet=True, min_size=min(shape[:2]),
        )  # fmt: skip


def _group_name(key: str) -> str:
    return f"block_{key}" if key.isdigit() else key


def group_layers(
    layers: Sequence[keras.layers.Layer],
    pattern: str | None = None,
    boundary: str | None = None,
) -> list[tuple[str, list]]:
    """Split a backbone's layers with weights into ordered, named groups.

    With `pattern`, a layer joins the group its name's captured block names. A layer whose
    name matches nothing, or names a block already left behind (branches of neighbouring
    blocks can interleave), joins the current group; unmatched layers before the first block
    form `stem`, and after the last one `top`. With `boundary`, each layer whose name matches
    it closes a group named after it; layers after the last boundary form `top`. With neither,
    the whole backbone is one group, `backbone`.

    Args:
        layers: a backbone's layers, bottom to top.
        pattern: a regular expression with one group, searched in layer names.
        boundary: a regular expression matched against layer names.

    Example:
    >>> from tfinetune.models.catalogue import convnet_tiny
    >>> [name for name, _ in group_layers(convnet_tiny((32, 32, 3)).layers, r"^(block\\d+)_")]
    ['stem', 'block1', 'block2', 'block3', 'block4']
    """
    groups: list[tuple[str, list]] = []
    if boundary is not None:
        regex, current = re.compile(boundary), []
        for layer in layers:
            if layer.weights:
                current.append(layer)
            if regex.match(layer.name) and current:
                groups.append((layer.name, current))
                current = []
        if current:
            groups.append(("top", current))
        return groups

    weighted = [layer for layer in layers if layer.weights]
    if pattern is None:
        return [("backbone", weighted)] if weighted else []
    regex = re.compile(pattern)
    keys = [(m.group(1) if (m := regex.search(layer.name)) else None) for layer in weighted]
    last_keyed = max((i for i, k in enumerate(keys) if k is not None), default=-1)
    seen: set[str] = set()
    for i, (layer, key) in enumerate(zip(weighted, keys, strict=True)):
        if key is not None and key not in seen:
            seen.add(key)
            groups.append((_group_name(key), [layer]))
        elif key is None and not groups:
            groups.append(("stem", [layer]))
        elif key is None and i > last_keyed and groups[-1][0] != "top":
            groups.append(("top", [layer]))
        else:
            groups[-1][1].append(layer)
    return groups
