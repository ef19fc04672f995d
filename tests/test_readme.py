"""Every Python block of README.md, executed as written on tiny data.

The blocks run in a folder laid out as the README assumes (`flowers/train`, `train.csv`,
`rose.jpg`, ...), filled with tiny synthetic images, sentences and tones. Only what cannot
run offline or in seconds is replaced, each replacement listed in `OFFLINE` and required to
apply: the catalogue backbone by `convnet_tiny` at 32 px without downloaded weights, TF Hub
handles by tiny local SavedModels, TF Serving by two small local stand-ins that answer its
REST and gRPC `predict` as TF Serving does, on free local ports. A README block that no
longer runs, or one added without a place here, fails this test.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tiny_hub import save_tiny_audio, save_tiny_text

from tfinetune.data.audio import tone_wav
from tfinetune.data.synthetic import write_shapes_folder

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
# Each block's first line, and what it needs replaced to run here.
OFFLINE = {
    "import tfinetune\n\ndata = tfinetune.image_folder_datasets(": [
        (', weights="imagenet"', ""),
        ('"mobilenet_v2"', '"convnet_tiny", weights=None, image_size=32'),
        ("image_size=224", "image_size=32"),
    ],
    "from tfinetune import Stage, TrainingConfig, fine_tune,": [
        ("num_steps=100", "num_steps=5"),
        ('"block_13"', '"block3"'),
    ],
    "import tfinetune\n\n# Several labels per image": [
        ('"mobilenet_v2",\n    len', '"convnet_tiny",\n    len'),
        ("image_size=224", "image_size=32"),
        ('"mobilenet_v2", 1,', '"convnet_tiny", 1, weights=None, image_size=32,'),
        ("dropout=0.3,\n)", "dropout=0.3,\n    weights=None,\n    image_size=32,\n)"),
    ],
    "import base64, json, urllib.request": [
        ("localhost:8501", "localhost:{rest_port}"),
        ("localhost:8500", "localhost:{grpc_port}"),
    ],
    "import json\nimport tensorflow as tf  # or: from ai_edge_litert": [],
    "import tensorflow as tf\nfrom tfinetune import build_classifier, fine_tune": [
        ("hub:https://tfhub.dev/google/nnlm-en-dim50/2", "hub:{text_hub}"),
        ("hub:https://tfhub.dev/google/yamnet/1", "hub:{audio_hub}"),
    ],
}


def _block(start: str, **values) -> str:
    """The README block that begins with `start`, with its replacements applied."""
    found = [b for b in BLOCKS if b.startswith(start)]
    assert len(found) == 1, f"no single README block starts with {start!r}"
    code = found[0]
    for old, new in OFFLINE[start]:
        assert old in code, f"the README block {start!r} no longer holds {old!r}"
        code = code.replace(old, new.format(**values))
    return code


def _run(code: str, namespace: dict | None = None) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), namespace if namespace is not None else {})
    return printed.getvalue()


def test_every_python_block_of_the_readme_has_a_place_here():
    assert len(BLOCKS) == len(OFFLINE)
    assert all(any(b.startswith(start) for b in BLOCKS) for start in OFFLINE)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder laid out as the README's examples assume, with tiny data."""
    root = tmp_path_factory.mktemp("readme")
    for split, count in (("train", 8), ("val", 4)):
        write_shapes_folder(root / "flowers" / split, ["ring", "cross"], count, size=32)
    write_shapes_folder(root / "pics", ["ring", "cross"], 8, size=32, image_format="jpeg")
    photos = sorted((root / "pics").rglob("*.jpg"))
    (root / "rose.jpg").write_bytes(photos[0].read_bytes())
    rng = np.random.default_rng(0)
    with (root / "train.csv").open("w", newline="") as f, (root / "ages.csv").open("w") as g:
        tags, ages = csv.writer(f), csv.writer(g)
        tags.writerow(["path", "tags"])
        ages.writerow(["path", "age"])
        for i, photo in enumerate(photos):
            path = photo.relative_to(root).as_posix()
            tags.writerow([path, ["red", "blue", "red blue"][i % 3]])
            ages.writerow([path, f"{rng.uniform(10, 80):.1f}"])
    with (root / "reviews.csv").open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["text", "label"])
        for i in range(20):
            rows.writerow([["a fine good day", "the worst bad film"][i % 2], ["pos", "neg"][i % 2]])
    for name, hertz in (("low", 300), ("high", 2000)):
        (root / "sounds" / "train" / name).mkdir(parents=True)
        for i in range(4):
            wav = tone_wav(hertz + 10 * i, seconds=0.5, rate=8000)
            (root / "sounds" / "train" / name / f"{i}.wav").write_bytes(wav)
    hubs = {"text_hub": save_tiny_text(root / "hub_text"),
            "audio_hub": save_tiny_audio(root / "hub_audio")}  # fmt: skip
    return root, hubs


@pytest.fixture(scope="module")
def quick_start(workspace):
    """The Python quick start and the fine-tuning controls, run in one namespace as a reader
    would run them one after the other."""
    root, _ = workspace
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        namespace: dict = {}
        printed = _run(_block("import tfinetune\n\ndata = tfinetune.image_folder_datasets("),
                       namespace)  # fmt: skip
        stages_block = _block("from tfinetune import Stage, TrainingConfig, fine_tune,")
        printed += _run(stages_block, namespace)
    return root, namespace, printed


def test_the_python_quick_start_trains_evaluates_and_exports(quick_start):
    root, namespace, printed = quick_start
    history = namespace["history"]
    assert [s[0] for s in history.stages] == ["head", "fine-tune"]
    assert "accuracy" in printed and "valley" in printed
    assert (root / "models" / "flowers" / "1" / "saved_model.pb").is_file()
    assert (root / "lr_finder.png").stat().st_size > 0


def test_the_tasks_block_trains_a_multi_label_and_a_regression_model(workspace, monkeypatch):
    root, _ = workspace
    monkeypatch.chdir(root)
    namespace: dict = {}
    printed = _run(_block("import tfinetune\n\n# Several labels per image"), namespace)
    thresholds = namespace["report"].thresholds
    assert len(thresholds) == 2 and str(thresholds) in printed  # red, blue
    assert namespace["model"].output_shape == (None, 1)  # the regression model, last


def test_the_text_and_sound_block_runs_on_local_hub_models(workspace, monkeypatch):
    root, hubs = workspace
    monkeypatch.chdir(root)
    namespace: dict = {}
    start = "import tensorflow as tf\nfrom tfinetune import build_classifier, fine_tune"
    _run(_block(start, **hubs), namespace)
    clips = next(iter(namespace["train"]))[0]
    assert clips.shape[-1] == 15600  # 0.975 s at 16 kHz
    scores = namespace["model"].predict(clips[None] if clips.ndim == 1 else clips, verbose=0)
    assert scores.shape[-1] == 2


def _jsonable(value):
    """A signature's output as TF Serving's REST API writes it: strings as text."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


class _Serving:
    """Stand-ins for TF Serving's REST and gRPC `predict` over one SavedModel."""

    def __init__(self, version: Path):
        self.signatures = tf.saved_model.load(str(version)).signatures

    def outputs(self, name: str, feeds: dict) -> dict[str, np.ndarray]:
        out = self.signatures[name](**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    def rest(self) -> ThreadingHTTPServer:
        serving = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rows = [base64.b64decode(r["b64"]) for r in body["instances"]]
                out = serving.outputs("serving_default", {"image_bytes": rows})
                predictions = [
                    {k: _jsonable(v[i]) for k, v in out.items()} for i in range(len(rows))
                ]
                reply = json.dumps({"predictions": predictions}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def grpc(self):
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        serving = self

        class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                out = serving.outputs(request.model_spec.signature_name, feeds)
                reply = predict_pb2.PredictResponse()
                for key, value in out.items():
                    reply.outputs[key].CopyFrom(tf.make_tensor_proto(value))
                return reply

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, port


def test_the_serving_clients_get_the_label_from_rest_and_grpc(quick_start, monkeypatch):
    root, namespace, _ = quick_start
    monkeypatch.chdir(root)
    serving = _Serving(root / "models" / "flowers" / "1")
    rest = serving.rest()
    grpc_server, grpc_port = serving.grpc()
    try:
        code = _block("import base64, json, urllib.request",
                      rest_port=rest.server_address[1], grpc_port=grpc_port)  # fmt: skip
        printed = _run(code).splitlines()
    finally:
        rest.shutdown()
        grpc_server.stop(0)
    expected = serving.outputs("serving_default", {"image_bytes": [Path("rose.jpg").read_bytes()]})
    label = expected["label"][0].decode()
    assert printed[0] == label and label in namespace["data"].class_names
    assert printed[1].startswith(f"[b'{label}']")


def test_the_tflite_block_reads_the_export_and_predicts_its_label(quick_start, monkeypatch):
    from tfinetune import export_tflite

    root, namespace, _ = quick_start
    monkeypatch.chdir(root)
    model, names = namespace["model"], namespace["data"].class_names
    # The README exports int8 with the command line; float32 keeps this fast, same files.
    export_tflite(model, "lite/flowers-int8", names, overwrite=True)
    printed = _run(_block("import json\nimport tensorflow as tf  # or: from ai_edge_litert"))
    pixels = tf.io.read_file("rose.jpg")
    from tfinetune.data.images import decode_and_resize

    keras_label = names[int(np.argmax(model.predict(
        decode_and_resize(pixels, (32, 32))[None], verbose=0)))]  # fmt: skip
    assert printed.strip() == keras_label


def test_the_table_of_contents_lists_every_section_in_order():
    text = README.read_text()
    contents = re.search(r"^## Contents\n\n((?:- .*\n)+)", text, re.M).group(1)
    listed = re.findall(r"^- \[(.+)\]\(#([\w-]+)\)$", contents, re.M)
    headings = [h for h in re.findall(r"^## (.+)$", text, re.M) if h != "Contents"]
    assert [title for title, _ in listed] == headings
    for title, anchor in listed:  # GitHub's anchors: lower case, punctuation out, - for space
        assert anchor == re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_the_backbone_table_holds_the_committed_benchmark_and_the_catalogue():
    from tfinetune.models.catalogue import LISTING

    measured = json.loads((README.parent / "benchmarks/results/backbone_cpu.json").read_text())
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| ([\d.]+) M \| [^|]+ \| ([\d.]+) \| ([\d.]+)x \|$",
                      README.read_text(), re.M)  # fmt: skip
    assert len(rows) == len(measured["rows"]) >= 10
    by_name = {r["backbone"]: r for r in measured["rows"]}
    for name, size, millions, cpu, ratio in rows:
        found = by_name[name]
        assert int(size) == found["image_size"]
        assert millions == f"{LISTING[name][0] / 1e6:.1f}"
        assert cpu == f"{found['cpu_ms_per_image']:.1f}"
        assert ratio == f"{found['cpu_vs_mobilenet_v2']:.2f}"
    assert [float(cpu) for *_, cpu, _ in rows] == sorted(float(cpu) for *_, cpu, _ in rows)
