"""How tfinetune ends when things go wrong: interrupts, kills, full disks, bad input.

Each case asserts both what the user sees (one line, an exit code, no traceback) and what
is left on disk (the earlier state, never a half-written file under its final name).
"""

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfinetune import build_classifier, fine_tune, scan_image_folder
from tfinetune.cli import main
from tfinetune.data.synthetic import write_shapes_folder

TINY = ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "16"]
TINY += ["--epochs", "1", "--freeze-epochs", "0", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp("f") / "data", ["ring", "star"], 6, size=16)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One tiny run, trained once; tests take copies of it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY]) == 0
    return run


def _copy(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "run"))


def _cli(*args, prelude="", **kwargs):
    """`tfinetune ARGS` in a fresh process, after running `prelude` (a patch) in it."""
    code = textwrap.dedent(prelude)
    code += "\nimport sys\nfrom tfinetune.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        **kwargs,
    )


def _one_line_no_traceback(stderr):
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("tfinetune:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


KILL = """
import os, signal
def killed(*args, **kwargs):
    with open({partial!r}, "w") as f:
        f.write("half")  # something was being written when the process died
    os.kill(os.getpid(), signal.SIGKILL)
"""
PATCHES = {
    "saving model.keras": "import keras\nkeras.Model.save = killed",
    "exporting": "import tfinetune.serving.export as e\ne._check_export = killed",
}


@pytest.mark.processes
@pytest.mark.parametrize("during", sorted(PATCHES))
def test_sigkill_while_saving_leaves_the_earlier_run_as_it_was(data, trained, tmp_path, during):
    run = _copy(trained, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    prelude = KILL.format(partial=str(tmp_path / "partial")) + PATCHES[during]
    killed = _cli("train", "--data", data, "--out", run, "--overwrite", *TINY, prelude=prelude)
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "partial").is_file()
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before  # the earlier run, whole; the new one never appeared
    assert (tmp_path / ".run.lock").is_file()  # left by the killed process: see test_atomic


@pytest.mark.processes
@pytest.mark.parametrize(
    "error, hint",
    [("ENOSPC", "free some disk space"), ("EACCES", "choose a folder you may write to")],
)
def test_a_full_disk_or_a_refused_write_is_one_line_and_leaves_no_run(data, tmp_path, error, hint):
    prelude = f"""
    import errno, os, keras
    def refused(self, path, *args, **kwargs):
        raise OSError(errno.{error}, os.strerror(errno.{error}), str(path))
    keras.Model.save = refused
    """
    out = _cli("train", "--data", data, "--out", tmp_path / "run", *TINY, prelude=prelude)
    assert out.returncode == 1
    line = _one_line_no_traceback(out.stderr)
    assert os.strerror(getattr(errno, error)) in line and hint in line
    assert not (tmp_path / "run").exists()


@pytest.mark.processes
def test_ctrl_c_and_sigterm_end_with_130_one_line_and_a_run_to_resume(data, tmp_path):
    slow = ["--epochs", "100000"]  # still training when the signal comes
    for number, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        out = tmp_path / f"run{number}"
        process = subprocess.Popen(
            [sys.executable, "-m", "tfinetune.cli", "train", "--data", str(data), "--out",
             str(out), *TINY, *slow],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        checkpoint = tmp_path / f"run{number}.partial" / "checkpoints" / "checkpoint.npz"
        deadline = time.monotonic() + 120
        while not checkpoint.is_file():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        if number == 0:  # meanwhile, a second train into the same folder is refused
            second = _cli("train", "--data", data, "--out", out, *TINY)
            assert second.returncode == 2
            expected = f"Another tfinetune command (process {process.pid})"
            assert expected in _one_line_no_traceback(second.stderr)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr[-2000:]
        line = _one_line_no_traceback(stderr)
        assert line.endswith(
            f"resume from the last completed epoch with: tfinetune train --resume {out}"
        )
        assert not out.exists() and checkpoint.is_file()  # the run is not there, yet
        # No temporary left: the checkpoint, and the one before it, kept for resuming.
        names = {p.name for p in checkpoint.parent.iterdir()}
        assert names <= {"checkpoint.npz", "checkpoint.previous.npz"}, names


def test_a_second_train_into_the_same_folder_is_refused_while_one_runs(data, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".run.lock").write_text(str(other.pid))
        out = _cli("train", "--data", data, "--out", tmp_path / "run", *TINY)
    finally:
        other.kill()
        other.wait()
    assert out.returncode == 2
    assert f"Another tfinetune command (process {other.pid})" in _one_line_no_traceback(out.stderr)


def test_overwrite_leaves_nothing_of_the_old_run_beside_the_new_one(
    data, trained, tmp_path, capsys
):
    run = _copy(trained, tmp_path)
    assert (run / "metrics.json").is_file()
    args = ["--val-split", "0", "--overwrite"]  # no validation: no metrics this time
    assert main(["train", "--data", str(data), "--out", str(run), *TINY, *args]) == 0
    assert not (run / "metrics.json").exists() and (run / "model.keras").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--out", str(run)]) == 2
    assert "holds a tfinetune run" in capsys.readouterr().err  # evaluate never lands on a run
    assert (run / "model.keras").is_file()


@pytest.mark.processes
def test_a_damaged_saved_model_in_predict_is_one_line(data, trained, tmp_path):
    run = _copy(trained, tmp_path)
    pb = run / "saved_model" / "1" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])
    image = next((data / "ring").iterdir())
    out = _cli("predict", run, image)
    assert out.returncode == 2
    assert "cannot be loaded" in _one_line_no_traceback(out.stderr)
    folder = _cli("predict", tmp_path / "nope", data)
    assert "nope' does not exist. Pass a run folder" in _one_line_no_traceback(folder.stderr)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image-size", "0"], "must be 1 or more, not 0"),
        (["--batch-size", "-3"], "must be 1 or more, not -3"),
        (["--epochs", "two"], "invalid whole number: 'two'"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(data, tmp_path, args, message):
    out = _cli("train", "--data", data, "--out", tmp_path / "run", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_a_damaged_weights_file_is_reported_before_the_data_is_read(tmp_path):
    weights = tmp_path / "mobilenet.h5"
    weights.write_bytes(b"\x00" * 1000)
    args = ["train", "--data", tmp_path / "no_such_data", "--out", tmp_path / "run"]
    out = _cli(*args, "--backbone", "mobilenet_v2", "--weights", weights)
    assert out.returncode == 2
    assert "not in HDF5 format" in _one_line_no_traceback(out.stderr)


def test_an_image_size_beyond_the_bound_is_refused():
    with pytest.raises(ValueError, match="image_size is at most 2048"):
        build_classifier("convnet_tiny", 2, weights=None, image_size=10000)


def _png(path, mode, size):
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            _png(root / name / f"{i}.png", "RGB", (8 + i, 8 + 3 * (name == "b")))
    _png(root / "a" / "bomb.png", "L", (12000, 10000))  # 120 megapixels in about 120 kB
    assert (root / "a" / "bomb.png").stat().st_size < 500_000
    files = scan_image_folder(root)
    bad = {b.path.rsplit("/", 1)[-1]: b.reason for b in files.bad_files}
    assert "image too large: more than 100,000,000 pixels" in bad["bomb.png"]
    for path in (root / "b").iterdir():
        path.unlink()
    _png(root / "b" / "bomb.png", "L", (12000, 10000))
    with pytest.raises(ValueError, match=r"Class 'b' .* has no usable image.*image too large"):
        scan_image_folder(root)


def test_a_class_folder_linking_to_another_class_or_the_root_is_refused(data, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("ring", "star"):
        (root / name).symlink_to(data / name)
    (root / "zz_everything").symlink_to(data)
    with pytest.raises(ValueError, match=r"Class 'zz_everything'.*the same image as"):
        scan_image_folder(root)


def test_a_class_name_that_cannot_round_trip_through_labels_txt_is_refused(data, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "ring").symlink_to(data / "ring")
    (root / "star\nfish").symlink_to(data / "star")
    with pytest.raises(ValueError, match=r"Class name 'star\\nfish' cannot be stored"):
        scan_image_folder(root)


def _pixels(x, y, batch=4):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_nan_pixels_stop_training_with_a_message_that_says_what_to_try():
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    x = np.full((8, 16, 16, 3), np.nan, "float32")
    with pytest.raises(FloatingPointError, match=r"loss became nan .* lower learning rate"):
        fine_tune(model, _pixels(x, np.zeros(8, "int32")), epochs=0, freeze_epochs=1, verbose=0)


def test_an_empty_dataset_is_an_error_and_the_weights_stay_as_they_were():
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    before = [w.numpy().copy() for w in model.weights]
    empty = _pixels(np.zeros((0, 16, 16, 3), "float32"), np.zeros(0, "int32"))
    with pytest.raises(ValueError, match="gave no batch in epoch 1"):
        fine_tune(model, empty, epochs=1, freeze_epochs=1, verbose=0)
    for weight, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((8, 16, 16, 3), "float32"), np.full(8, 7, "int32"), "7 .*class indices from 0"),
        (np.zeros((8, 16, 16, 3), "float32"), np.array(["ring"] * 8), "labels are strings"),
        (np.zeros((8, 16, 16, 1), "float32"), np.zeros(8, "int32"), "have 1 channel"),
    ],
    ids=["label out of range", "string labels", "one channel"],
)
def test_labels_and_images_that_do_not_fit_the_model_say_so(x, y, message):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    with pytest.raises(ValueError, match=message):
        fine_tune(model, _pixels(x, y), epochs=0, freeze_epochs=1, verbose=0)


def test_exit_codes_are_the_documented_ones(data, trained, tmp_path, capsys):
    assert json.loads((trained / ".tfinetune").read_text())["kind"] == "run"
    assert main(["train", "--data", str(data), "--out", str(trained), *TINY]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert os.path.isdir(trained)


def test_fine_tune_given_images_without_labels_says_to_pass_x_and_y():
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    x = np.zeros((8, 16, 16, 3), "float32")
    with pytest.raises(ValueError, match=r"pass \(x, y\) for arrays. Received an array of shape"):
        fine_tune(model, x, epochs=0, freeze_epochs=1, verbose=0)


def test_fine_tune_trains_on_an_x_y_pair_of_arrays_as_fit_does():
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    x, y = np.zeros((40, 16, 16, 3), "float32"), np.arange(40) % 2
    history = fine_tune(model, (x, y), (x[:8], y[:8]), epochs=0, freeze_epochs=1, verbose=0)
    assert history.optimizer[0]["iterations"] == 2  # 40 examples in fit's batches of 32
    assert len(history.history["val_loss"]) == 1


TFLITE_FAULTS = {
    "killed converting": "import tfinetune.serving.tflite as t\nt.convert_to_tflite = killed",
    "killed writing": "import pathlib\npathlib.Path.write_bytes = killed",
}


@pytest.mark.processes
@pytest.mark.parametrize("fault", sorted(TFLITE_FAULTS))
def test_a_kill_in_a_tflite_int8_export_leaves_nothing_under_its_name(trained, tmp_path, fault):
    """Killed during conversion and int8 calibration, or while writing the flatbuffer: no
    folder under the export's name; the next export into it completes."""
    out = tmp_path / "lite"
    prelude = KILL.format(partial=str(tmp_path / "partial")) + TFLITE_FAULTS[fault]
    args = ["export", trained, "--format", "tflite", "--quantize", "int8", "--out", out]
    killed = _cli(*args, prelude=prelude, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "partial").is_file() and not out.exists()
    again = _cli(*args, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "model.tflite").is_file() and (out / "labels.txt").is_file()


def test_a_full_disk_during_a_tflite_export_is_one_line_and_leaves_nothing(trained, tmp_path):
    prelude = """
    import errno, os, pathlib
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    pathlib.Path.write_bytes = full
    """
    out = tmp_path / "lite"
    done = _cli("export", trained, "--format", "tflite", "--out", out, prelude=prelude)
    assert done.returncode == 1
    line = _one_line_no_traceback(done.stderr)
    assert "No space left on device" in line and "free some disk space" in line
    assert not out.exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [], left  # no staging folder, and the lock released


SLOW_STEPS = {  # a step that takes long, patched to wait for the signal at its start
    "scanning": ("tfinetune.data.files", "check_files", ["train", "--data", "{data}", "--out",
                                                          "{tmp}/run", *TINY]),
    "evaluating": ("tfinetune.runs.evaluate", "report_for",
                   ["evaluate", "{run}", "--data", "{data}", "--out", "{tmp}/eval"]),
    "exporting": ("tfinetune.serving.tflite", "convert_to_tflite",
                  ["export", "{run}", "--format", "tflite", "--out", "{tmp}/lite"]),
}  # fmt: skip
WAIT = """
import time, {module} as m
def waiting(*args, **kwargs):
    open({marker!r}, "w").close()
    time.sleep(600)
m.{name} = waiting
"""


@pytest.mark.processes
@pytest.mark.parametrize("step", sorted(SLOW_STEPS))
def test_ctrl_c_while_scanning_evaluating_or_exporting_is_one_line(data, trained, tmp_path, step):
    module, name, args = SLOW_STEPS[step]
    marker = tmp_path / "started"
    code = textwrap.dedent(WAIT.format(module=module, name=name, marker=str(marker)))
    code += "\nimport sys\nfrom tfinetune.cli import main\nsys.exit(main(sys.argv[1:]))"
    args = [a.format(data=data, run=trained, tmp=tmp_path) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert _one_line_no_traceback(stderr).startswith("tfinetune: interrupted; ")
    assert not [line for line in stderr.splitlines() if line.strip()
                and not line.startswith("tfinetune:")], stderr[-2000:]  # fmt: skip
