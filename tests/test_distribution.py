"""Training under `tf.distribute`: two logical CPUs, two worker processes, the CLI's strategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfinetune.cli.main import main
from tfinetune.models.classifier import build_classifier
from tfinetune.training.distribution import check_in_scope, resolve_strategy
from tfinetune.training.fine_tuning import fine_tune

# The same tiny training in every process: a seeded model, 32 images in global batches of 8,
# a head epoch and an unfrozen epoch at three rates (a MultiOptimizer), plain SGD.
TRAINING = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np, tensorflow as tf
    from tfinetune import build_classifier, fine_tune

    def train(strategy):
        keras.utils.set_random_seed(3)
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 32)
        x = (rng.uniform(0, 120, (32, 16, 16, 3)) + 120 * y[:, None, None, None]).astype("f4")
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        with strategy.scope():
            model = build_classifier("convnet_tiny", 2, weights=None, image_size=16, dropout=0.0)
        start = [w.numpy().copy() for w in model.weights]
        history = fine_tune(
            model, data, freeze_epochs=1, epochs=1, train_groups=3, lr_mult=10,
            learning_rate=0.05, optimizer="sgd", ema_momentum=None, strategy=strategy,
            precision="float32", verbose=0,
        )
        return start, [w.numpy() for w in model.weights], history
    """
)


# The command line, in a fresh process: `python -c CLI ARGS`.
CLI = "import sys\nfrom tfinetune.cli import main\nsys.exit(main(sys.argv[1:]))"


def _python(code: str, *args: str, env=None, timeout=300) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )  # fmt: skip


def _finish(process: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"a training process did not finish within {timeout} s")
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.mark.processes
def test_mirrored_two_cpus_matches_one_device():
    code = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, "
        "[tf.config.LogicalDeviceConfiguration()] * 2)\n" + TRAINING + textwrap.dedent(
            """
            s0, one, _ = train(tf.distribute.get_strategy())
            two_cpus = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            s1, two, history = train(two_cpus)
            print(json.dumps({
                "same_start": max(float(np.abs(a - b).max()) for a, b in zip(s0, s1)),
                "moved": max(float(np.abs(a - b).max()) for a, b in zip(s0, one)),
                "difference": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
                "replicas": history.performance["replicas"],
            }))
            """
        )
    )  # fmt: skip
    facts = json.loads(_finish(_python(code)).strip().splitlines()[-1])
    assert facts["replicas"] == 2 and facts["same_start"] == 0.0
    assert facts["moved"] > 1e-3  # the weights trained
    assert facts["difference"] < 1e-5, facts


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.processes
def test_multi_worker_across_two_processes(tmp_path: Path):
    code = (
        "from tfinetune.training.distribution import resolve_strategy\n"
        "strategy = resolve_strategy('multi_worker')\n" + TRAINING + textwrap.dedent(
            """
            start, end, history = train(strategy)
            print(json.dumps({
                "replicas": history.performance["replicas"],
                "loss": history.history["loss"],
                "weights": [float(w.sum()) for w in end],
            }))
            """
        )
    )  # fmt: skip
    workers = [_python(code, env=env) for env in _tf_config()]
    results = [json.loads(_finish(w, timeout=240).strip().splitlines()[-1]) for w in workers]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["weights"] == results[1]["weights"]  # one model, kept in sync
    loss = results[0]["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0], loss


def test_model_built_outside_the_strategy_is_refused():
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match="built outside the scope of the MirroredStrategy"):
        check_in_scope(model, mirrored)
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 16, 16, 3)), [0, 1, 0, 1])).batch(2)
    with pytest.raises(ValueError, match=r"inside `with strategy.scope\(\):`"):
        fine_tune(model, data, strategy=mirrored, verbose=0)


def test_strategy_names():
    with pytest.raises(ValueError, match="Unknown strategy 'gpus'"):
        resolve_strategy("gpus")
    if "TF_CONFIG" not in os.environ:
        with pytest.raises(ValueError, match="TF_CONFIG"):
            resolve_strategy("multi_worker")
    assert resolve_strategy("default") is tf.distribute.get_strategy()
    assert type(resolve_strategy("mirrored")).__name__ == "MirroredStrategy"


def test_cli_mirrored_run(tiny_folder: Path, tmp_path: Path):
    out = tmp_path / "run"
    code = main([
        "train", "--data", str(tiny_folder), "--backbone", "convnet_tiny", "--weights", "none",
        "--image-size", "32", "--epochs", "1", "--freeze-epochs", "1", "--quiet",
        "--strategy", "mirrored", "--batch-size", "4", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    performance = json.loads((out / "history.json").read_text())["performance"]
    replicas = performance["replicas"]
    assert performance["strategy"] == "MirroredStrategy"
    assert (
        performance["global_batch"]
        == 4 * replicas
        == 4 * len(tf.config.list_logical_devices("GPU") or [0])
    )
    assert (out / "saved_model" / "1" / "saved_model.pb").is_file()


def _cli_workers(args: list[str], envs: list[dict], scratch: Path) -> list[subprocess.Popen]:
    """`tfinetune ARGS` as one process for each environment (TF_CONFIG or KERAS_*)."""
    return [_python(CLI, *args, env={"TMPDIR": str(scratch), **env}) for env in envs]


def _tf_config(n: int = 2) -> list[dict]:
    """Each worker's TF_CONFIG for a cluster of `n` on 127.0.0.1."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    return [
        {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        for i in range(n)
    ]


def _keras_group(n: int = 2) -> list[dict]:
    """Each process's Keras distribution variables for a JAX group of `n` on 127.0.0.1."""
    address = f"127.0.0.1:{_free_ports(1)[0]}"
    return [
        {"KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
         "KERAS_DISTRIBUTION_NUM_PROCESSES": str(n), "KERAS_DISTRIBUTION_PROCESS_ID": str(i)}
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.processes
# JAX compiles each stage's step in both processes, twice: about 100 s here, so a slow test.
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_the_cli_trains_as_two_workers_into_one_run_folder_and_resumes(
    tmp_path: Path, backend: str
):
    """Two `tfinetune train --strategy multi_worker` processes on 127.0.0.1 (TensorFlow's
    MultiWorkerMirroredStrategy, or Keras's DataParallel on JAX), killed in stage 2 and
    resumed: one run folder (the chief's), a SavedModel that passes `verify`, nothing left by
    the other worker."""
    import signal
    import time

    from tfinetune.atomic import partial_folder
    from tfinetune.data.synthetic import write_shapes_folder
    from tfinetune.training.checkpoints import load_checkpoint

    group = _tf_config if backend == "tensorflow" else _keras_group
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 12, size=32)
    run, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    args = ["train", "--data", str(data), "--backbone", "convnet_tiny", "--weights", "none"]
    args += ["--image-size", "32", "--freeze-epochs", "1", "--epochs", "4", "--batch-size", "4"]
    workers = _cli_workers(
        [*args, "--strategy", "multi_worker", "--out", str(run)], group(), scratch
    )
    deadline = time.monotonic() + 360
    while True:  # until the chief's checkpoint is an epoch into stage 2
        found = load_checkpoint(partial_folder(run) / "checkpoints")
        if found and found[0].stage == 1 and found[0].epochs_done >= 1:
            break
        assert all(w.poll() is None for w in workers), workers[0].communicate()[1][-3000:]
        assert time.monotonic() < deadline, "stage 2 did not begin within 360 s"
        time.sleep(0.1)
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert not run.exists() and partial_folder(run).is_dir()
    killed = set(scratch.glob("tfinetune-worker-*"))  # SIGKILL leaves a worker's temp folder

    workers = _cli_workers(["train", "--resume", str(run)], group(), scratch)
    outputs = [_finish(w, timeout=360) for w in workers]
    assert all("Done in" in out for out in outputs)
    history = json.loads((run / "history.json").read_text())
    assert [stage["name"] for stage in history["stages"]] == ["head", "fine-tune"]
    assert len(history["history"]["loss"]) == 5  # 1 + 4 epochs, across the kill
    performance = history["performance"]
    assert performance["replicas"] == 2 and performance["global_batch"] == 8
    assert performance["backend"] == backend
    if backend == "jax":
        assert performance["strategy"] == "keras.distribution.DataParallel"
        assert performance["processes"] == 2
    assert json.loads((run / "metrics.json").read_text())["num_examples"] == 4
    assert not partial_folder(run).exists()
    assert set(scratch.glob("tfinetune-worker-*")) == killed  # the resumed worker's is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run", "scratch"]
    assert main(["verify", str(run / "saved_model" / "1"), "--data", str(data)]) == 0


@pytest.mark.parametrize("processes, local", [(2, 1), (3, 1), (2, 2)])
def test_each_process_takes_an_equal_share_of_every_batch(processes: int, local: int):
    """Equal shares (JAX needs one shape), a multiple of the local devices, and together
    every example of each batch, a short batch wrapping round."""
    from tfinetune.training.processes import ProcessGroup, process_share

    batches = tf.data.Dataset.range(11).map(lambda i: (i, -i)).batch(8)
    shares = [
        list(process_share(batches, ProcessGroup(p, processes, processes * local)))
        for p in range(processes)
    ]  # fmt: skip
    for whole, parts in zip(batches, zip(*shares, strict=True), strict=True):
        sizes = {int(tf.size(x)) for x, _ in parts}
        assert len(sizes) == 1 and sizes.pop() % local == 0
        taken = np.concatenate([x.numpy() for x, _ in parts])
        assert set(taken) == set(whole[0].numpy())  # every example, none from elsewhere
        assert len(taken) - len(whole[0]) < processes * local  # at most a few twice
        assert all((y.numpy() == -x.numpy()).all() for x, y in parts)  # pairs kept together


@pytest.mark.processes
def test_multi_worker_on_jax_without_a_group_says_what_to_set(tiny_folder: Path, tmp_path: Path):
    """No KERAS_DISTRIBUTION_* variables and no scheduler: one clear line, exit 2, nothing
    written."""
    out = tmp_path / "run"
    process = _python(CLI, "train", "--data", str(tiny_folder), "--backbone", "convnet_tiny",
                      "--weights", "none", "--strategy", "multi_worker", "--out", str(out),
                      env={"KERAS_BACKEND": "jax"})  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr[-3000:]
    assert "KERAS_DISTRIBUTION_JOB_ADDRESSES" in stderr and "Traceback" not in stderr
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # no run, no temporary folder
