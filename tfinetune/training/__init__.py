"""Step 3 of the flow: staged fine-tuning of a classifier with Keras's own `fit`.

- `freezing`: layer groups, freezing and unfreezing, the BatchNorm policy.
- `losses`: the loss and metrics for the task and labels, label smoothing.
- `schedules`: warm-up + cosine and one-cycle learning-rate schedules.
- `optimizers`: discriminative learning rates as a Keras `MultiOptimizer`.
- `options`: `TrainingConfig` and `PerformanceConfig` (plain data), what every stage shares.
- `recipe`: `Stage` (plain data) and `RECIPE`, the stages `tfinetune train` uses.
- `stages`: checking stages, the simple two-stage spelling, and the history of every stage.
- `performance`: the precision and XLA policy of the training step.
- `distribution`: `tf.distribute` strategies, and how batches and rates scale.
- `processes`: several processes on the JAX backend, through Keras's distribution API.
- `step`: one stage's training step compiled (`compile_stage`), backend-neutral.
- `guards`: checks around `fit` that turn silent damage into clear messages.
- `checkpoints`: a checkpoint after every epoch, to resume from.
- `progress`: stage-labelled progress, the stage table, callbacks seeing one run.
- `fine_tuning`: `fine_tune`, which trains the stages with `model.fit`.
- `lr_finder`: the learning-rate finder.
- `distillation`: `Distiller`, a student trained on a teacher's softened predictions.
- `curves`: figures of training histories and finder sweeps.
"""
