"""Training as several processes on the JAX backend, through Keras's own distribution API.

`tfinetune train --strategy multi_worker` on TensorFlow uses `MultiWorkerMirroredStrategy`;
on the JAX backend the same flag joins a group of processes with
`keras.distribution.initialize` (which reads `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`, or lets JAX find a
cluster scheduler's own variables) and trains data-parallel over every device of the group
(`keras.distribution.DataParallel`). Every process reads the same, equally shuffled dataset
of global batches and keeps its own slice of each (`process_share`); the weights are the same
everywhere after each step. After training every process leaves the group together
(`leave_process_group`), and the chief (process 0) then evaluates and exports alone.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import keras

# What `keras.distribution.initialize` reads when it is given no arguments.
ENVIRONMENT = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


@dataclass(frozen=True)
class ProcessGroup:
    """The processes training one model together, and the devices they hold.

    It stands where a run takes a `tf.distribute` strategy: `num_replicas_in_sync` (every
    device of the group) multiplies the batch and the learning rates, and `scope()` changes
    nothing (Keras's distribution, set when the group was joined, places the variables).

    Args:
        process_id: this process's index; 0 is the chief.
        num_processes: the processes in the group.
        num_replicas_in_sync: the devices of the whole group.

    Example:
    >>> group = ProcessGroup(1, 2, 2)
    >>> group.chief, group.local_replicas
    (False, 1)
    """

    process_id: int
    num_processes: int
    num_replicas_in_sync: int
    name: str = "keras.distribution.DataParallel"

    @property
    def chief(self) -> bool:
        """Whether this process writes the run folder (process 0)."""
        return self.process_id == 0

    @property
    def local_replicas(self) -> int:
        """The devices of this process."""
        return self.num_replicas_in_sync // self.num_processes

    def scope(self) -> contextlib.AbstractContextManager:
        """A scope that changes nothing (as the default strategy's)."""
        return contextlib.nullcontext()


def join_process_group() -> ProcessGroup:
    """Join this process's group (`keras.distribution.initialize`) and train data-parallel.

    Call it before any other JAX work. On CPUs the processes exchange gradients through gloo.

    Every process of the group calls it with its own `KERAS_DISTRIBUTION_PROCESS_ID`; on
    another backend it explains what to set.

    Example:
    >>> join_process_group()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: Keras's multi-process data parallelism is wired here for the JAX backend; ...
    """
    if keras.config.backend() != "jax":
        raise ValueError(
            f"Keras's multi-process data parallelism is wired here for the JAX backend; Keras "
            f"runs on {keras.config.backend()}. Set KERAS_BACKEND=jax, or use TensorFlow's "
            f"multi_worker strategy with TF_CONFIG on the TensorFlow backend."
        )
    import jax

    with contextlib.suppress(AttributeError, ValueError):  # an older JAX: its default
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except (ValueError, RuntimeError) as err:
        unset = [name for name in ENVIRONMENT if name not in os.environ]
        raise ValueError(
            f"strategy 'multi_worker' on the JAX backend could not join a group of processes "
            f"({(str(err).splitlines() or [type(err).__name__])[0].rstrip('.')}). Set "
            f"{', '.join(unset) or ' and '.join(ENVIRONMENT)} on every process (the "
            f"coordinator's host:port, how many processes, and this one's index from 0), or "
            f"start them under a scheduler JAX recognises (Slurm, Open MPI, Cloud TPU)."
        ) from None
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    return ProcessGroup(jax.process_index(), jax.process_count(), jax.device_count())


def leave_process_group() -> None:
    """Every process, together, after training: the distribution unset and the group shut
    down, so that the chief can go on alone (a process that waited for it would time out)."""
    import jax

    keras.distribution.set_distribution(None)
    jax.distributed.shutdown()


def process_share(dataset: Any, group: ProcessGroup) -> Any:
    """This process's slice of every global batch of a `tf.data` dataset.

    Each process takes `ceil(B / replicas)` examples per device of a batch of B, the same
    number on every process (which JAX needs to make one global batch of them): a short last
    batch is filled by wrapping round to its first examples, so every example is used in each
    pass and at most `replicas - 1` are used twice.

    Args:
        dataset: batches of the global batch size, the same order on every process.
        group: the process group.

    Example:
    >>> import tensorflow as tf
    >>> batches = tf.data.Dataset.range(5).batch(4)
    >>> [b.tolist() for b in process_share(batches, ProcessGroup(1, 2, 2)).as_numpy_iterator()]
    [[2, 3], [4]]
    """
    if dataset is None or group.num_processes == 1:
        return dataset
    import tensorflow as tf

    def mine(*batch):
        size = tf.shape(tf.nest.flatten(batch)[0])[0]
        per_device = (size + group.num_replicas_in_sync - 1) // group.num_replicas_in_sync
        share = per_device * group.local_replicas
        rows = (group.process_id * share + tf.range(share)) % size
        parts = tf.nest.map_structure(lambda t: tf.gather(t, rows), batch)
        return parts if len(parts) > 1 else parts[0]

    return dataset.map(mine)


def describe_group(group: ProcessGroup) -> dict:
    """What a run records of its process group.

    Args:
        group: the process group.

    Example:
    >>> describe_group(ProcessGroup(0, 2, 4))
    {'processes': 2, 'devices_per_process': 2}
    """
    return {"processes": group.num_processes, "devices_per_process": group.local_replicas}
