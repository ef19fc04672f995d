"""`fine_tune`: train the head on a frozen backbone, then unfreeze blocks from the top."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras

from tfinetune.models.heads import task_of
from tfinetune.models.specs import BackboneSpec
from tfinetune.training.checkpoints import (
    EpochCheckpoint,
    Progress,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from tfinetune.training.distillation import Distiller
from tfinetune.training.freezing import layer_groups
from tfinetune.training.guards import TrainingGuard, check_training_data, explain_graph_error
from tfinetune.training.losses import default_loss, default_metrics, resolve_loss
from tfinetune.training.optimizers import OptimizerFactory, learning_rates_of
from tfinetune.training.performance import Performance, precision_scope, resolve_performance
from tfinetune.training.progress import OneRun, StageProgress, stage_table
from tfinetune.training.stages import (
    FineTuneHistory,
    Stage,
    check_stages,
    default_stages,
)
from tfinetune.training.step import (
    OwnWeights,
    compile_stage,
    ends_on_averages,
    optimizer_factory,
    record_xla,
)

if TYPE_CHECKING:
    import tensorflow as tf


def fine_tune(
    model: keras.Model,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: int = 5,
    freeze_epochs: int = 3,
    learning_rate: float = 1e-3,
    lr_mult: float = 10.0,
    train_groups: int = 5,
    fine_tune_learning_rate: float | None = None,
    schedule: str = "constant",
    stages: Sequence[Stage] | None = None,
    train_bn: bool = False,
    optimizer: str | OptimizerFactory = "adam",
    optimizer_options: Mapping[str, Any] | None = None,
    ema_momentum: float | None = 0.9,
    gradient_accumulation_steps: int | None = None,
    label_smoothing: float = 0.0,
    loss: str | keras.losses.Loss | None = None,
    metrics: Sequence[str | keras.metrics.Metric] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    class_weight: Mapping[int, float] | None = None,
    steps_per_epoch: int | None = None,
    spec: BackboneSpec | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    precision: str = "auto",
    jit_compile: bool | str = "auto",
    strategy: str | tf.distribute.Strategy | None = None,
    verbose: int | str = "auto",
) -> FineTuneHistory:
    """Fine-tune a classifier in stages, recompiling between them.

    The simple spelling, close to fastai's: `freeze_epochs` epochs train the head on a
    frozen backbone at `learning_rate`; then the top `train_groups` layer groups (the head
    and the top backbone blocks) train for `epochs` epochs, the head at
    `fine_tune_learning_rate` (default `learning_rate / 2`) and lower groups more slowly,
    down to `fine_tune_learning_rate / lr_mult` for the lowest (discriminative rates, one
    Keras optimizer per group in a `MultiOptimizer`). Or pass `stages`.

    BatchNormalization layers stay frozen, and so in inference mode, unless `train_bn`.
    Callbacks see every epoch of every stage, numbered continuously.

    The loss and metrics follow the model's head (`tfinetune.models.task_of`) unless given:
    cross-entropy and accuracy for one label; binary cross-entropy, accuracy and AUC for
    several; mean squared error, MAE and RMSE for regression. A `Distiller` trains its
    student's layer groups in the same stages, on the blended loss.

    With `ema_momentum`, the optimizer keeps an exponential moving average of the trained
    weights (Keras's `use_ema`) and each stage ends with the model holding those averages:
    on small datasets this removes much of the step-to-step noise of the final weights.
    Per-epoch validation metrics are computed on the raw weights.

    Args:
        model: a model made by `build_classifier`, or a `Distiller` of two.
        train_data: a `tf.data` dataset of `(pixels, labels)` batches, a
            `keras.utils.PyDataset` of such batches, or an `(x, y)` pair of arrays, which
            `model.fit` batches as it does by default (32 per batch, shuffled every epoch).
            On the JAX and PyTorch backends `tf.data` works too (Keras reads it), and the
            other two need no TensorFlow.
        val_data: optional validation data in any of those forms.
        epochs: epochs of the unfrozen stage (0 skips it).
        freeze_epochs: epochs of the head-only stage (0 skips it).
        learning_rate: the head stage's learning rate.
        lr_mult: the spread of the unfrozen stage's rates (1: one rate for every group).
        train_groups: how many layer groups, from the top and counting the head, the second
            stage trains (5: the head and the top 4 backbone blocks).
        fine_tune_learning_rate: the head's rate in the unfrozen stage (`learning_rate / 2`).
        schedule: "constant", "warmup_cosine" or "one_cycle", for both stages.
        stages: an explicit list of `Stage`s, instead of the arguments above.
        train_bn: train BatchNormalization layers in unfrozen groups.
        optimizer: a Keras optimizer name, or `(learning_rate, name) -> optimizer`.
        optimizer_options: more arguments for the named optimizer (e.g. `weight_decay`).
        ema_momentum: the momentum of the weight average (about `1 / (1 - m)` steps), or
            None for the raw weights.
        gradient_accumulation_steps: apply the summed gradients every this many steps.
        label_smoothing: smooth the one-hot targets by this much (sparse or one-hot labels).
        loss: the Keras loss; by default the head's (see above): for one label, sparse
            cross-entropy for class indices, categorical for one-hot or mixed rows (MixUp,
            CutMix).
        metrics: the Keras metrics (default: the head's, see above).
        callbacks: Keras callbacks, shared by every stage.
        class_weight: Keras's `class_weight` (e.g. `ImageData.class_weights()`).
        steps_per_epoch: batches per epoch, as in `model.fit` (needed for a dataset that
            repeats forever); also sizes the schedules, which otherwise count one pass.
        spec: the backbone's spec, for a loaded classifier whose backbone is not in the
            catalogue (see `layer_groups`).
        checkpoint_dir: a folder for `checkpoint.npz`, written atomically after every epoch
            (weights, optimizer state, stage and history), to resume from.
        resume: continue from `checkpoint_dir`'s checkpoint, if there is one: completed
            stages are skipped, and the stage in progress continues from its last completed
            epoch with its optimizer state (schedule position and weight averages included).
            Give the same model, data and stages as the interrupted call.
        precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16": the layers
            compute in it while `fine_tune` runs (variables and the head's output stay
            float32; float16 gets loss scaling); see `tfinetune.training.performance`.
        jit_compile: "auto", True or False: compile the training step with XLA.
        strategy: a `tf.distribute` strategy or its name (see `resolve_strategy`); by
            default the one the model was built under. The model must be built in its
            scope; each batch of `train_data` is split over the replicas. TensorFlow
            backend only: on JAX, set a `keras.distribution` instead.
        verbose: passed to `model.fit`; when not 0, each epoch is labelled with its stage
            ("stage 2/2 fine-tune, epoch 3/6") and each stage ends with a short table.

    Example:
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> ds = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((8, 32, 32, 3), "float32"), np.array([0, 1] * 4))).batch(4)
    >>> h = fine_tune(m, ds, epochs=1, freeze_epochs=1, verbose=0)
    >>> [name for name, _, _ in h.stages]
    ['head', 'fine-tune']
    """
    net = model.student if isinstance(model, Distiller) else model  # whose layers train
    if stages is None:
        stages = default_stages(
            net,
            epochs=epochs,
            freeze_epochs=freeze_epochs,
            learning_rate=learning_rate,
            lr_mult=lr_mult,
            train_groups=train_groups,
            fine_tune_learning_rate=fine_tune_learning_rate,
            schedule=schedule,
            spec=spec,
        )
    groups = layer_groups(net, spec)
    check_stages(stages, [g.name for g in groups])
    make_optimizer = optimizer_factory(
        optimizer, optimizer_options, ema_momentum, gradient_accumulation_steps
    )
    check_training_data(net, train_data)
    performance = resolve_performance(precision, jit_compile)
    scope, replica_count = _distribution(model, strategy)
    if verbose:
        print(f"Training on {performance.describe()} (why: tfinetune doctor).", flush=True)
    task = task_of(net)
    schedule_steps = _steps_for_schedules(stages, train_data, steps_per_epoch)
    counted = steps_per_epoch is None and any(s.schedule != "constant" for s in stages)
    run = _StageRun(
        model, net, train_data, val_data, groups=[g.name for g in groups],
        loss=resolve_loss(loss or default_loss(train_data, task), label_smoothing),
        metrics=default_metrics(task) if metrics is None else list(metrics),
        make_optimizer=make_optimizer,
        schedule_steps=schedule_steps,
        fit_options={"steps_per_epoch": steps_per_epoch, "verbose": verbose,
                     "class_weight": dict(class_weight) if class_weight else None},
        callbacks=[OneRun(c) for c in callbacks], train_bn=train_bn, spec=spec,
        checkpoints=checkpoint_dir,
        performance=performance, batches=schedule_steps if counted else None,
    )  # fmt: skip
    saved = load_checkpoint(checkpoint_dir) if resume and checkpoint_dir else None
    progress, arrays = saved if saved else (Progress(), {})
    result = FineTuneHistory.from_dict(progress.history)
    result.performance = {**performance.to_dict(), "replicas": replica_count,
                          "backend": keras.config.backend()}  # fmt: skip
    with scope, precision_scope(net, performance.precision):
        for index, stage in enumerate(stages):
            if index < progress.stage:
                continue  # done before the resume
            resumed = progress if saved and index == progress.stage else None
            run.stage(index, stage, len(stages), result, resumed, arrays)
            if model.stop_training:
                break
    for callback in run.callbacks:
        callback.end()
    return result


@dataclass
class _StageRun:
    """What every stage of one `fine_tune` call shares, and how one stage runs."""

    model: keras.Model
    net: keras.Model
    train_data: Any
    val_data: Any
    groups: list[str]
    loss: Any
    metrics: list
    make_optimizer: OptimizerFactory
    schedule_steps: int
    fit_options: dict
    callbacks: list
    train_bn: bool
    spec: BackboneSpec | None
    checkpoints: str | os.PathLike | None
    performance: Performance
    batches: int | None = None  # in one epoch, when counted (for the progress bar)

    def stage(
        self, index: int, stage: Stage, count: int, result: FineTuneHistory,
        resumed: Progress | None, arrays: dict,
    ) -> None:  # fmt: skip
        """Train one stage (from where a checkpoint left it) and add it to `result`."""
        model = self.model
        optimizer = compile_stage(
            model, stage, self.groups, loss=self.loss, metrics=self.metrics,
            make_optimizer=self.make_optimizer,
            total_steps=self.schedule_steps * stage.epochs, performance=self.performance,
            net=self.net, train_bn=self.train_bn, spec=self.spec,
        )  # fmt: skip
        record_xla(model, self.performance, result.performance)
        start, name = result.epochs, stage.name or f"stage {index + 1}"
        done = resumed.epochs_done if resumed else 0
        if resumed:  # mid-stage: the optimizer's state too; at a boundary, the weights
            restore(model, optimizer if done else None, arrays)
        # The guard first (no checkpoint of a diverged epoch), then the checkpoint, so that
        # an interrupt in a user's callback comes after the epoch is saved.
        callbacks: list = [TrainingGuard(name), OwnWeights()]
        if self.checkpoints:
            earlier = resumed.stage_logs if resumed else {}
            done_before = result.to_dict()
            callbacks.append(EpochCheckpoint(self.checkpoints, index, done_before, earlier, start))
        if self.fit_options["verbose"]:
            steps = self.fit_options["steps_per_epoch"] or self.batches
            callbacks.append(StageProgress(index, count, name, start, steps))
        callbacks += self.callbacks
        with warnings.catch_warnings():
            # tfinetune's datasets skip unreadable files, so their length is unknown until
            # the first epoch ends; Keras warns about that, harmlessly, once per stage.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            try:
                with _multi_worker(model):
                    history = model.fit(
                        **_fit_data(self.train_data), validation_data=self.val_data,
                        initial_epoch=start + done, epochs=start + stage.epochs,
                        callbacks=callbacks, **self.fit_options,
                    )  # fmt: skip
            except _graph_errors() as err:
                raise ValueError(explain_graph_error(err)) from None
        averaged = ends_on_averages(optimizer)
        facts = {"iterations": int(keras.ops.convert_to_numpy(optimizer.iterations)),
                 "learning_rates": dict(learning_rates_of(optimizer)),
                 # the epochs' metrics are the raw weights'; the stage ends on their average
                 "ends_on_averaged_weights": averaged}  # fmt: skip
        result.add(name, history, resumed.stage_logs if resumed else None, facts)
        if self.fit_options["verbose"]:
            print(stage_table(result, name, averaged), flush=True)
        if self.checkpoints:  # a stage boundary: the final (averaged) weights, no optimizer
            save_checkpoint(self.checkpoints, model, None, Progress(index + 1, 0, result.to_dict()))


def _steps_for_schedules(
    stages: Sequence[Stage], train_data: Any, steps_per_epoch: int | None
) -> int:
    """Optimizer steps per epoch, as the schedules count them (1 when no stage needs it)."""
    if steps_per_epoch is not None:
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int):
            raise ValueError(f"steps_per_epoch must be an int. Received: {steps_per_epoch!r}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be 1 or more. Received: {steps_per_epoch!r}")
        return steps_per_epoch
    if any(s.schedule != "constant" for s in stages):
        return count_batches(train_data)
    return 1


def count_batches(dataset: Any) -> int:
    """The number of batches in one pass: the dataset's cardinality, or one pass to count.

    Args:
        dataset: a finite `tf.data` dataset, a `keras.utils.PyDataset`, or an `(x, y)` pair
            of arrays (batches of 32, as `model.fit` makes them).

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> count_batches(tf.data.Dataset.range(10).batch(4)), count_batches((np.zeros(70), None))
    (3, 3)
    """
    if isinstance(dataset, tuple):
        return math.ceil(len(dataset[0]) / ARRAY_BATCH)
    if isinstance(dataset, keras.utils.PyDataset):
        return len(dataset)
    import tensorflow as tf

    known = int(dataset.cardinality())
    if known == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "The dataset repeats forever, so an epoch has no length: give steps_per_epoch."
        )
    if known >= 0:
        return known
    return int(dataset.reduce(0, lambda count, _: count + 1))


# The batch size `model.fit` uses for arrays when none is given.
ARRAY_BATCH = 32


def _fit_data(data: Any) -> dict:
    """`model.fit`'s data arguments: arrays as `x` and `y`, anything else as `x`."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(
                f"Give training arrays as an (x, y) pair; received a tuple of {len(data)}."
            )
        return {"x": data[0], "y": data[1], "batch_size": ARRAY_BATCH, "shuffle": True}
    # tf.data and PyDatasets shuffle themselves; Keras ignores shuffle for them
    return {"x": data, "shuffle": False}


def _distribution(model: keras.Model, strategy: Any) -> tuple[Any, int]:
    """The scope training runs in, and how many replicas share each batch."""
    if keras.config.backend() != "tensorflow":
        if strategy is not None:
            raise ValueError(
                f"strategy={strategy!r} is TensorFlow's tf.distribute, and Keras runs on "
                f"{keras.config.backend()}: set a keras.distribution (for example "
                "keras.distribution.DataParallel()) before building the model instead."
            )
        distribution = keras.distribution.distribution()
        devices = len(distribution.device_mesh.devices.flat) if distribution else 1
        return contextlib.nullcontext(), devices
    from tfinetune.training.distribution import check_in_scope, replicas, resolve_strategy

    strategy = model.distribute_strategy if strategy is None else resolve_strategy(strategy)
    check_in_scope(model, strategy)
    return strategy.scope(), replicas(strategy)


@contextlib.contextmanager
def _multi_worker(model: keras.Model) -> Iterator[None]:
    """TensorFlow's multi-worker `fit` fix (`tfinetune.compat`); nothing on other backends."""
    if keras.config.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    from tfinetune.compat import multi_worker_fit

    with multi_worker_fit(model, tf.distribute.get_strategy()):
        yield


def _graph_errors() -> tuple[type[BaseException], ...]:
    """The errors `explain_graph_error` rewrites: TensorFlow's, on its backend."""
    if keras.config.backend() != "tensorflow":
        return ()
    import tensorflow as tf

    return (tf.errors.InvalidArgumentError,)
