"""The one place where tfinetune touches private Keras internals, each with why.

Everything else in tfinetune uses the public Keras and TensorFlow API. The sites here have no
public path on the Keras versions we support; each is checked against the installed Keras
when this module is imported, so an upgrade that moves one fails here, at once, with a
message that names it, rather than somewhere deep inside a training run.

1. `seeded_layers` (augmentation): Keras preprocessing layers draw their randomness from the
   `SeedGenerator` that the private `Layer._get_seed_generator` returns, and nested layers
   (RandAugment, AugMix) ignore the public `seed=` argument of `get_random_transformation`.
   To give every random draw of every layer a seed that belongs to one batch (repeatable
   pipelines with parallel maps), that method is replaced on each layer, nested ones found
   with the private `Layer._flatten_layers`, while the layers run.
2. `BatchSeedGenerator` (augmentation): a `keras.random.SeedGenerator` without its state
   variable (a `tf.data` map may not create variables), which folds a per-batch seed tensor.
   It overrides `next`, the method `keras.random` calls, and skips the parent's `__init__`.
3. `multi_worker_fit` (training): Keras 3's `fit` fails under a multi-worker
   `MultiWorkerMirroredStrategy` (keras-team/keras#20585): it all-reduces the first data
   batch, a nested structure, to build the model symbolically, and reduces each step's scalar
   logs with `axis=0`. While `fit` runs, the model's private `_distribute_strategy` is
   cleared (Keras then takes the strategy in scope, which `fine_tune` enters, and builds
   when it traces) and the private `reduce_per_replica` of Keras's TensorFlow trainer
   reduces scalars without an axis. Nothing changes for other strategies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as _tf_trainer

# The Keras versions these internals were checked on (the tests run on both ends).
KERAS_RANGE = ((3, 15), (4, 0))


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def private_sites() -> tuple[tuple[object, str], ...]:
    """Every private attribute this module uses, with what holds it (for `check_keras`).

    Example:
    >>> sorted(name for _, name in private_sites())[:2]
    ['_distribute_strategy', '_flatten_layers']
    """
    sites: tuple[tuple[object, str], ...] = (
        (keras.layers.RandomFlip, "_get_seed_generator"),  # 1
        (keras.layers.Layer, "_flatten_layers"),  # 1
    )
    if keras.config.backend() != "tensorflow":
        return sites  # 3 patches the TensorFlow trainer, which other backends never use
    return (
        *sites,
        (_tf_trainer, "reduce_per_replica"),  # 3
        (keras.Sequential(), "_distribute_strategy"),  # 3: set on every model
        (tf.distribute.StrategyExtended, "_in_multi_worker_mode"),  # 3
    )


def check_keras(version: str = keras.__version__) -> None:
    """Fail with a clear message when Keras is outside the range tfinetune was tested on.

    Args:
        version: a Keras version string.

    Example:
    >>> check_keras("2.15.0")
    Traceback (most recent call last):
    ImportError: tfinetune needs Keras >= 3.15 and < 4.0; this is Keras 2.15.0. ...
    """
    (low, high), found = KERAS_RANGE, _version(version)
    if not low <= found < high:
        raise ImportError(
            f"tfinetune needs Keras >= {low[0]}.{low[1]} and < {high[0]}.{high[1]}; this is "
            f"Keras {version}. Install a supported version: pip install 'keras>=3.15,<4'."
        )
    missing = [
        f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
        for owner, name in private_sites()
        if not hasattr(owner, name)
    ]
    if missing:
        raise ImportError(
            f"Keras {version} no longer has {', '.join(missing)}, which tfinetune.compat "
            "uses (see its docstring). Install the Keras version tfinetune was tested with: "
            "pip install 'keras>=3.15,<4'."
        )


check_keras()


# === 1 and 2: per-batch seeds for preprocessing layers ===


class BatchSeedGenerator(keras.random.SeedGenerator):
    """Stateless seeds folded from one `[2]` seed tensor: a `SeedGenerator` without a variable.

    Args:
        seed: a `[2]` integer tensor.

    Example:
    >>> g = BatchSeedGenerator(tf.constant([1, 2]))
    >>> bool(tf.reduce_any(g.next() != g.next()))
    True
    """

    def __init__(self, seed: tf.Tensor) -> None:  # no super().__init__: no state variable
        self._base = tf.cast(seed, tf.int64)
        self._draws = 0

    def next(self, ordered: bool = True) -> tf.Tensor:
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._base, self._draws)


@contextlib.contextmanager
def seeded_layers(layers: Sequence[keras.layers.Layer], seed: tf.Tensor) -> Iterator[None]:
    """While tracing, make every (nested) layer draw its randomness from `seed`.

    Args:
        layers: Keras layers.
        seed: a `[2]` integer tensor.

    Example:
    >>> flip = keras.layers.RandomFlip(seed=0)
    >>> x = tf.reshape(tf.range(8.0), [2, 1, 4, 1])
    >>> with seeded_layers([flip], tf.constant([5, 5])):
    ...     a = flip(x, training=True)
    >>> with seeded_layers([flip], tf.constant([5, 5])):
    ...     b = flip(x, training=True)
    >>> bool(tf.reduce_all(a == b))
    True
    """
    generator = BatchSeedGenerator(seed)
    patched = [sub for layer in layers for sub in layer._flatten_layers(include_self=True)]
    for sub in patched:
        object.__setattr__(sub, "_get_seed_generator", lambda backend=None: generator)
    try:
        yield
    finally:
        for sub in patched:
            sub.__dict__.pop("_get_seed_generator", None)


# === 3: fit under a multi-worker strategy ===


def _in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    extended = strategy.extended
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        extended._in_multi_worker_mode()
    )


@contextlib.contextmanager
def multi_worker_fit(model: keras.Model, strategy: tf.distribute.Strategy) -> Iterator[None]:
    """Let `model.fit` run under a multi-worker strategy (see the module's docstring, 3).

    Args:
        model: the model about to train, built in `strategy`'s scope.
        strategy: the strategy in scope.

    Example:
    >>> m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> with multi_worker_fit(m, tf.distribute.get_strategy()):  # not multi-worker: no change
    ...     pass
    """
    if not _in_multi_worker_mode(strategy):
        yield
        return
    original = _tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean"):

            def mean(value):
                if isinstance(value, tf.distribute.DistributedValues):
                    return strategy.reduce("MEAN", value, axis=None)
                return value

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    saved = model._distribute_strategy
    model._distribute_strategy = None
    _tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        _tf_trainer.reduce_per_replica = original
        model._distribute_strategy = saved
