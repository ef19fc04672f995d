"""`benchmarks/gpu_train_step.py --smoke`: the GPU benchmark's script runs on this CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.processes]

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_train_step.py"


def test_the_smoke_run_times_every_keras_variant_and_says_why_timm_did_not_run(tmp_path):
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["settings"]["smoke"] and result["environment"]["python"]
    timed = [r for r in result["runs"] if r["framework"] == "keras"]
    assert {(r["variant"], r["precision"]) for r in timed} == {
        (v, p) for v in ("keras", "tfinetune", "tfinetune_noguard")
        for p in ("float32", "mixed_bfloat16")
    }  # fmt: skip
    for row in timed:
        assert row["images_per_s"] > 0 and row["ms_per_step_min"] <= row["ms_per_step"]
        assert row["jit_compile"] and row["windows"] == 2
    plain = next(r for r in timed if r["variant"] == "keras")
    ours = next(r for r in timed if r["variant"] == "tfinetune")
    # tfinetune's step: one optimizer per group, BatchNorm frozen (fewer trained weights)
    assert ours["optimizer"] == "MultiOptimizer" and plain["optimizer"] == "Adam"
    assert ours["trainable_weights"] < plain["trainable_weights"]
    timm = [r for r in result["runs"] if r["framework"] == "timm"]
    assert timm and all("ms_per_step" in r or r["status"].startswith("skipped") for r in timm)
    assert "| mobilenet_v2 | float32 | tfinetune |" in done.stdout  # the table
