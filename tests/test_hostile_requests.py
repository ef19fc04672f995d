"""A served image model facing hostile requests (#37): each signature of the loaded
SavedModel refuses empty, random, truncated, forged, oversized and mismatched input with a
clear error, quickly, and in bounded memory (measured in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tfinetune.models.classifier import build_classifier
from tfinetune.serving.export import export_saved_model

# Sends each of `requests` ({name: (signature, input name, value)}) to the SavedModel at
# argv[1]; prints {name: {outcome, seconds, grown_mb}} as JSON.
RUN = r"""
import json, resource, sys, time
import tensorflow as tf
from tfinetune.serving.inference import find_saved_model

loaded = tf.saved_model.load(str(find_saved_model(sys.argv[1])))
results = {}
for name, (signature, key, value) in requests.items():
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    try:
        out = loaded.signatures[signature](**{key: tf.constant(value)})
        outcome = "answered " + str(out["label"].numpy().tolist())
    except (tf.errors.OpError, TypeError, ValueError) as err:
        text = getattr(err, "message", None) or str(err)  # TF's: the reason is on its last lines
        skip = ("Detected", "  File", "Graph execution")
        reason = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith(skip)]
        outcome = type(err).__name__ + ": " + " | ".join(reason)[-400:]
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    seconds = time.perf_counter() - started
    results[name] = {"outcome": outcome, "seconds": seconds, "grown_mb": grown}
print(json.dumps(results))
"""


def _probe(requests: str, model, expected: dict[str, str]) -> None:
    """Run the `requests` code then RUN in a fresh process; check each outcome, its time and
    the growth of peak memory (at most the request itself, twice: Python's and the tensor)."""
    done = subprocess.run([sys.executable, "-c", requests + RUN, str(model)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == set(expected)
    for name, wanted in expected.items():
        found = results[name]
        print(f"{name}: {found}")
        assert wanted in found["outcome"], (name, found)
        assert found["seconds"] < 30 and found["grown_mb"] < 300, (name, found)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    return export_saved_model(model, tmp_path_factory.mktemp("served") / "model", ["a", "b"])


# Each probe runs in the child process; `requests` maps a name to (signature, input).
PROBES = r"""
import json, resource, struct, sys, time, zlib
import numpy as np, tensorflow as tf
from tfinetune.serving.inference import find_saved_model
from tfinetune.serving.signatures import image_example

def png_header(width, height):  # a valid PNG signature and IHDR, no pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + crc

def jpeg_header(width, height):  # a real small JPEG whose SOF0 claims another size
    data = bytearray(tf.io.encode_jpeg(tf.zeros([16, 16, 3], tf.uint8)).numpy())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)

good = tf.io.encode_png(tf.zeros([40, 40, 3], tf.uint8)).numpy()
rng = np.random.default_rng(0)
requests = {
    "empty bytes": ("serving_default", "image_bytes", [b""]),
    "random bytes": ("serving_default", "image_bytes", [rng.bytes(5000)]),
    "truncated PNG": ("serving_default", "image_bytes", [good[: len(good) // 2]]),
    "23000x23000 PNG header": ("serving_default", "image_bytes", [png_header(23000, 23000)]),
    "forged JPEG header 60000x60000": ("serving_default", "image_bytes",
                                       [jpeg_header(60000, 60000)]),
    "100 MB string": ("serving_default", "image_bytes", [b"\x89PNG" + bytes(100 * 2**20)]),
    "example without image": ("serve_examples", "example_bytes",
                              [tf.train.Example().SerializeToString()]),
    "example of a bomb": ("serve_examples", "example_bytes",
                          [image_example(png_header(23000, 23000))]),
    "example of random bytes": ("serve_examples", "example_bytes", [rng.bytes(300)]),
    "images of 4 channels": ("serve_images", "images", np.zeros([1, 8, 8, 4], np.uint8)),
    "images as floats": ("serve_images", "images", np.zeros([1, 8, 8, 3], np.float32)),
}
"""

EXPECTED = {  # what a client reads in the error TF Serving returns
    "empty bytes": "Input is empty",
    "random bytes": "Unknown image file format",
    "truncated PNG": "Invalid PNG data",
    "23000x23000 PNG header": "image too large: more than 100,000,000 pixels",
    "forged JPEG header 60000x60000": "image too large: more than 100,000,000 pixels",
    "100 MB string": "Unknown image file format",
    "example without image": "image/encoded (data type: string) is required",
    "example of a bomb": "image too large: more than 100,000,000 pixels",
    "example of random bytes": "image/encoded (data type: string) is required",
    "images of 4 channels": "from a tensor with shape [8,8,4]",
    "images as floats": "float",
}


def test_every_image_signature_refuses_hostile_requests_quickly_in_bounded_memory(served):
    _probe(PROBES, served, EXPECTED)


@pytest.fixture(scope="module")
def served_audio(tmp_path_factory):
    from tiny_hub import save_tiny_audio

    hub = save_tiny_audio(tmp_path_factory.mktemp("hub") / "audio")
    model = build_classifier(f"hub:{hub}", 2, clip_seconds=0.5)
    return export_saved_model(model, tmp_path_factory.mktemp("audio") / "model", ["a", "b"])


AUDIO_PROBES = r"""
import json, resource, struct, sys, time
import numpy as np, tensorflow as tf
from tfinetune.serving.inference import find_saved_model

def wav(payload, bits=16, form=1, claim=None, rate=16000):
    block = bits // 8
    fmt = struct.pack("<HHIIHH", form, 1, rate, rate * block, block, bits)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", len(payload) if claim is None else claim) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body

tone = (np.sin(np.arange(8000) / 5) * 9000).astype("<i2").tobytes()
rng = np.random.default_rng(0)
requests = {
    "empty bytes": ("serving_default", "audio_bytes", [b""]),
    "random bytes": ("serving_default", "audio_bytes", [rng.bytes(5000)]),
    "cut short": ("serving_default", "audio_bytes", [wav(tone)[:3000]]),
    "header claiming 2^31 bytes": ("serving_default", "audio_bytes", [wav(tone, claim=2**31)]),
    "A-law": ("serving_default", "audio_bytes", [wav(tone, bits=8, form=6)]),
    "100 MB string": ("serving_default", "audio_bytes", [b"RIFF" + bytes(100 * 2**20)]),
    "waveforms as ints": ("serve_waveforms", "waveforms", np.zeros([1, 8000], np.int32)),
    "waveforms of one rank": ("serve_waveforms", "waveforms", np.zeros([8000], np.float32)),
    "a good 24-bit clip": ("serving_default", "audio_bytes", [wav(bytes(3 * 8000), bits=24)]),
}
"""

AUDIO_EXPECTED = {
    "empty bytes": "not a WAV file: no RIFF/WAVE header",
    "random bytes": "not a WAV file: no RIFF/WAVE header",
    "cut short": "the WAV file is cut short",
    "header claiming 2^31 bytes": "the WAV file is cut short",
    "A-law": "unsupported WAV encoding",
    "100 MB string": "not a WAV file",
    "waveforms as ints": "expected to be a float tensor",
    "waveforms of one rank": "shape",
    "a good 24-bit clip": "answered",
}


def test_the_sound_signatures_refuse_hostile_requests_quickly_in_bounded_memory(served_audio):
    _probe(AUDIO_PROBES, served_audio, AUDIO_EXPECTED)


@pytest.fixture(scope="module")
def served_text(tmp_path_factory):
    from tiny_hub import save_tiny_text

    hub = save_tiny_text(tmp_path_factory.mktemp("hub") / "text")
    model = build_classifier(f"hub:{hub}", 2)
    return export_saved_model(model, tmp_path_factory.mktemp("text") / "model", ["a", "b"])


TEXT_PROBES = r"""
requests = {
    "empty text": ("serving_default", "text", [""]),
    "invalid UTF-8": ("serving_default", "text", [b"\xff\xfe bad"]),
    "NUL bytes": ("serving_default", "text", ["a\x00b"]),
    "100 MB of words": ("serving_default", "text", ["word " * (20 * 2**20)]),
    "one text over the limit in a batch": ("serving_default", "text", ["fine", "x" * 1000001]),
    "numbers": ("serving_default", "text", [1.0]),
}
"""

TEXT_EXPECTED = {
    "empty text": "answered",  # any string is a text: these get a label
    "invalid UTF-8": "answered",
    "NUL bytes": "answered",
    # Before: answered after 2.8 s and 2.8 GB of memory.
    "100 MB of words": "a text longer than 1000000 bytes",
    "one text over the limit in a batch": "a text longer than 1000000 bytes",
    "numbers": "expected to be a string tensor",
}


def test_the_text_signature_refuses_texts_over_its_limit_quickly(served_text):
    _probe(TEXT_PROBES, served_text, TEXT_EXPECTED)
