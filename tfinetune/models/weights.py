"""ImageNet weight files, found in local folders before anything is downloaded.

Each catalogue entry names the file Keras's application looks for (`BackboneSpec.
weights_file`). tfinetune looks for that file in `$TFINETUNE_WEIGHTS_DIR` and in Keras's
cache and hands its path to the builder; only when it is nowhere does Keras download it.
Local copies may be re-serialised, so they are loaded without Keras's hash check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tfinetune.models.specs import BackboneSpec

WEIGHTS_DIR_ENV = "TFINETUNE_WEIGHTS_DIR"


def weights_search_dirs() -> list[Path]:
    """Folders searched for ImageNet weight files before any download, in order.

    `$TFINETUNE_WEIGHTS_DIR` first, then Keras's cache (`$KERAS_HOME/models`, by default
    `~/.keras/models`).

    Example:
    >>> weights_search_dirs()[-1].name
    'models'
    """
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    dirs.append(Path(keras_home) / "models")
    return dirs


def weights_file_candidates(spec: BackboneSpec, size: tuple[int, int]) -> list[str]:
    """The file Keras asks for at this size, then the same weights made for 224 pixels.

    MobileNet files encode the input size they were trained at; convolution weights fit any
    size, so the 224 file serves at 160 when that is the one at hand.

    Args:
        spec: the backbone.
        size: `(height, width)`.

    Example:
    >>> from tfinetune.models.catalogue import CATALOGUE
    >>> weights_file_candidates(CATALOGUE["mobilenet_v2_035"], (160, 160))[1]
    'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5'
    """
    name = spec.weights_file_for(size)
    if name is None:
        return []
    at_224 = re.sub(r"_(96|128|160|192)_", "_224_", name)
    return [name] if at_224 == name else [name, at_224]


def find_local_weights(spec: BackboneSpec, size: tuple[int, int]) -> Path | None:
    """The first local ImageNet weights file for `spec` at `size`, or None.

    Args:
        spec: the backbone.
        size: `(height, width)`.

    Example:
    >>> from tfinetune.models.catalogue import CATALOGUE
    >>> find_local_weights(CATALOGUE["convnet_tiny"], (32, 32)) is None
    True
    """
    for candidate in weights_file_candidates(spec, size):
        for folder in weights_search_dirs():
            if (folder / candidate).is_file():
                return folder / candidate
    return None


def check_weights_argument(weights: str | os.PathLike | None) -> None:
    """Fail fast on a bad `weights` argument: None, "imagenet", or a readable HDF5 file.

    Called before any data is read, so a wrong or damaged file is reported at once.

    Args:
        weights: the `weights` argument of `build_classifier` / `build_backbone`.

    Example:
    >>> check_weights_argument("/no/such.h5")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: Weights file not found: '/no/such.h5'. ...
    """
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"weights must be None, 'imagenet' or a file path. Received: weights={weights!r}"
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file not found: {str(path)!r}. Pass an existing .h5 file, "
            "weights='imagenet' or weights=None."
        )
    import h5py  # Keras's own dependency for weight files

    if not h5py.is_hdf5(path):
        raise ValueError(
            f"{str(path)!r} is not a Keras weights file: it is not in HDF5 format (damaged, "
            "truncated or another kind of file). Pass a .h5 / .weights.h5 file saved by Keras."
        )
