"""Training beyond one device: which `tf.distribute` strategy, and how batches and rates scale.

`strategy="auto"` uses a TPU when one is attached (Colab sets `COLAB_TPU_ADDR`, Cloud TPU VMs
`TPU_NAME`), every local GPU when there are several (`MirroredStrategy`), and otherwise the
default strategy (one device). "mirrored", "multi_worker" (reads `TF_CONFIG`), "tpu" and
"default" ask for one; a `tf.distribute.Strategy` object is used as given.

The model and its optimizers must be made inside `strategy.scope()`: `train_run` does that,
and `fine_tune(strategy=...)` refuses a model made outside it. Keras shards the input
dataset over the replicas, so each batch of the dataset is a *global* batch. `train_run`
reads the experiment's `batch_size` as the batch per replica (on one device nothing
changes), makes the global batch that times the replicas, and scales every learning rate
by the same factor (the linear scaling rule); the run records all three.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def resolve_strategy(strategy: str | tf.distribute.Strategy | None = "auto"):
    """The `tf.distribute.Strategy` for a name (or the strategy itself).

    Args:
        strategy: "auto", "default", "mirrored", "multi_worker", "tpu", a strategy, or
            None (the strategy in scope, usually the default one).

    Example:
    >>> type(resolve_strategy("default")).__name__
    '_DefaultDistributionStrategy'
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy is None:
        return tf.distribute.get_strategy()
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {strategy!r}. Use one of: {', '.join(map(repr, STRATEGIES))}, "
            f"or pass a tf.distribute.Strategy."
        )
    if strategy == "auto":
        if _tpu_address() is not None or tf.config.list_logical_devices("TPU"):
            return _tpu_strategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy 'multi_worker' reads the cluster from the TF_CONFIG environment "
                "variable, which is not set. Set it on every worker (see the tf.distribute "
                "guide), or use 'mirrored' for the GPUs of one machine."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "tpu":
        return _tpu_strategy()
    return tf.distribute.get_strategy()


def _tpu_address() -> str | None:
    return os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME")


def _tpu_strategy():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as err:
        raise ValueError(
            f"strategy 'tpu': no TPU could be reached ({err}). In Colab choose a TPU runtime; "
            f"elsewhere set TPU_NAME, or use strategy 'auto'."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def replicas(strategy: tf.distribute.Strategy) -> int:
    """The number of replicas a global batch is split over.

    Args:
        strategy: a strategy.

    Example:
    >>> replicas(tf.distribute.get_strategy())
    1
    """
    return int(strategy.num_replicas_in_sync)


def describe_strategy(strategy: tf.distribute.Strategy, batch_per_replica: int) -> dict:
    """How a run is distributed: the strategy, replicas, batch sizes and the rate factor.

    Args:
        strategy: the run's strategy.
        batch_per_replica: the experiment's batch size.

    Example:
    >>> describe_strategy(tf.distribute.get_strategy(), 32)["global_batch"]
    32
    """
    n = replicas(strategy)
    return {
        "strategy": getattr(strategy, "name", type(strategy).__name__.lstrip("_")),
        "replicas": n,
        "batch_per_replica": batch_per_replica,
        "global_batch": batch_per_replica * n,
        "learning_rate_scale": n,
    }


def check_in_scope(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Refuse a model whose variables were made outside `strategy`'s scope.

    Args:
        model: a built model.
        strategy: the strategy training should use.

    Example:
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> check_in_scope(m, tf.distribute.get_strategy())
    """
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return  # the default strategy: any model will do
    for variable in model.weights[:1]:
        if not strategy.extended.variable_created_in_scope(variable.value):
            raise ValueError(
                f"The model was built outside the scope of the {type(strategy).__name__} it "
                f"should train with. Build it inside `with strategy.scope():` (or let "
                f"tfinetune.train_run build it), then call fine_tune."
            )
