"""`fine_tune`: train the head on a frozen backbone, then unfreeze blocks from the top."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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
from tfinetune.training.options import PerformanceConfig, TrainingConfig, split_options
from tfinetune.training.performance import (
    Performance,
    precision_scope,
    resolve_determinism,
    resolve_performance,
)
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


def fine_tune(
    model: keras.Model,
    train_data: Any,
    val_data: Any = None,
    *,
    stages: Sequence[Stage] | None = None,
    training: TrainingConfig | None = None,
    performance: PerformanceConfig | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: int | str = "auto",
    **options: Any,
) -> FineTuneHistory:
    """Fine-tune a classifier in stages, recompiling between them.

    `stages` are `Stage`s, the objects an experiment file holds (`tfinetune.RECIPE` is the
    recipe `tfinetune train` uses). Without them, the simple spelling, close to fastai's:
    `freeze_epochs` epochs train the head on a frozen backbone, then the top `train_groups`
    layer groups train for `epochs` epochs with discriminative rates (see `default_stages`
    for these keywords: `epochs`, `freeze_epochs`, `learning_rate`, `lr_mult`,
    `train_groups`, `fine_tune_learning_rate`, `schedule`). Lower groups learn more slowly,
    one Keras optimizer per group in a `MultiOptimizer`.

    BatchNormalization layers stay frozen, and so in inference mode, unless
    `training.train_bn`. Callbacks see every epoch of every stage, numbered continuously.

    The loss and metrics follow the model's head (`tfinetune.models.task_of`) unless given:
    cross-entropy and accuracy for one label (sparse for class indices, categorical for
    one-hot or mixed rows such as MixUp's); binary cross-entropy, accuracy and AUC for
    several; mean squared error, MAE and RMSE for regression. A `Distiller` trains its
    student's layer groups in the same stages, on the blended loss.

    With `training.ema_momentum` (0.9 by default), the optimizer keeps an exponential moving
    average of the trained weights (Keras's `use_ema`) and each stage ends with the model
    holding those averages: on small datasets this removes much of the step-to-step noise of
    the final weights. Per-epoch validation metrics are computed on the raw weights.

    Args:
        model: a model made by `build_classifier`, or a `Distiller` of two.
        train_data: a `tf.data` dataset of `(pixels, labels)` batches, a
            `keras.utils.PyDataset` of such batches, or an `(x, y)` pair of arrays, which
            `model.fit` batches as it does by default (32 per batch, shuffled every epoch).
            On the JAX and PyTorch backends `tf.data` works too (Keras reads it), and the
            other two need no TensorFlow.
        val_data: optional validation data in any of those forms.
        stages: the stages, in order; or leave out and use the simple spelling.
        training: what every stage shares: BatchNorm, label smoothing, weight averaging,
            optimizer, gradient accumulation, loss, metrics, class weights, steps per epoch
            (see `TrainingConfig`).
        performance: determinism, precision, XLA and the `tf.distribute` strategy (see
            `PerformanceConfig`). The model must be built in the strategy's scope; each
            batch is split over the replicas. On JAX, set a `keras.distribution` instead.
        callbacks: Keras callbacks, shared by every stage.
        checkpoint_dir: a folder for `checkpoint.npz`, written atomically after every epoch
            (weights, optimizer state, stage and history), to resume from.
        resume: continue from `checkpoint_dir`'s checkpoint, if there is one: completed
            stages are skipped, and the stage in progress continues from its last completed
            epoch with its optimizer state (schedule position and weight averages included).
            Give the same model, data and stages as the interrupted call.
        verbose: passed to `model.fit`; when not 0, each epoch is labelled with its stage
            ("stage 2/2 fine-tune, epoch 3/6") and each stage ends with a short table.
        **options: the simple-stage keywords above, or any field of `TrainingConfig` or
            `PerformanceConfig` by name (`label_smoothing=0.1` changes `training`).

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
    >>> h = fine_tune(m, ds, stages=[Stage(1, "all", 1e-4)],
    ...               training=TrainingConfig(label_smoothing=0.1), verbose=0)
    """
    simple, t, p = split_options(options, training, performance)
    net = model.student if isinstance(model, Distiller) else model  # whose layers train
    if stages is None:
        stages = default_stages(net, **simple, spec=t.spec)
    elif simple:
        raise TypeError(
            f"fine_tune() takes stages= or the simple stages ({', '.join(sorted(simple))}), "
            "not both: put those values in the Stage objects."
        )
    groups = layer_groups(net, t.spec)
    check_stages(stages, [g.name for g in groups])
    make_optimizer = optimizer_factory(
        t.optimizer, t.optimizer_options, t.ema_momentum or None,
        t.gradient_accumulation_steps if t.gradient_accumulation_steps > 1 else None,
    )  # fmt: skip
    check_training_data(net, train_data)
    resolved = resolve_performance(p.precision, _jit_compile(p))
    scope, replica_count = _distribution(model, None if p.strategy == "auto" else p.strategy)
    if verbose:
        print(f"Training on {resolved.describe()} (why: tfinetune doctor).", flush=True)
    task = task_of(net)
    schedule_steps = _steps_for_schedules(stages, train_data, t.steps_per_epoch)
    counted = t.steps_per_epoch is None and any(s.schedule != "constant" for s in stages)
    run = _StageRun(
        model, net, train_data, val_data, groups=[g.name for g in groups],
        loss=resolve_loss(t.loss or default_loss(train_data, task), t.label_smoothing),
        metrics=default_metrics(task) if t.metrics is None else list(t.metrics),
        make_optimizer=make_optimizer,
        schedule_steps=schedule_steps,
        fit_options={"steps_per_epoch": t.steps_per_epoch, "verbose": verbose,
                     "class_weight": dict(t.class_weight) if t.class_weight else None},
        callbacks=[OneRun(c) for c in callbacks], train_bn=t.train_bn, spec=t.spec,
        checkpoints=checkpoint_dir,
        performance=resolved, batches=schedule_steps if counted else None,
    )  # fmt: skip
    saved = load_checkpoint(checkpoint_dir) if resume and checkpoint_dir else None
    progress, arrays = saved if saved else (Progress(), {})
    result = FineTuneHistory.from_dict(progress.history)
    result.performance = {**resolved.to_dict(), "replicas": replica_count,
                          "backend": keras.config.backend()}  # fmt: skip
    with scope, precision_scope(net, resolved.precision):
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


def _jit_compile(p: PerformanceConfig) -> bool | str:
    """XLA as asked, after turning op determinism on where `p` says so: Keras compiles
    without XLA while it is on, so `auto` does not ask for XLA then."""
    if not resolve_determinism(p.deterministic_ops):
        return p.jit_compile
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return False if p.jit_compile == "auto" else p.jit_compile


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
