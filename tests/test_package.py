import subprocess
import sys

import tfinetune


def test_import_does_not_load_hub_or_datasets():
    code = (
        "import sys, tfinetune; "
        "print(sorted(m for m in ('tensorflow_hub', 'tensorflow_datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_public_api_is_explicit():
    assert sorted(tfinetune.__all__) == sorted(set(tfinetune.__all__))
    for name in tfinetune.__all__:
        assert getattr(tfinetune, name) is not None, name


def test_console_script_shows_help():
    out = subprocess.run(
        [sys.executable, "-m", "tfinetune.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in out.stdout
