"""The training step on a GPU: tfinetune's, plain Keras's and timm's, images per second.

One script for a GPU machine that has JAX and PyTorch but no TensorFlow (Keras runs on its
JAX backend there). For each backbone (ResNet50, MobileNetV2, EfficientNetB0 at 224 px,
batch 128) and each precision (float32, and `mixed_bfloat16` / bfloat16 autocast):

- **keras**: the plain Keras user's step: `keras.applications.<Net>(weights=None,
  include_top=False, pooling="avg")`, dropout and a float32 softmax `Dense`, the global dtype
  policy set before building, `compile(Adam, jit_compile=True)`, `fit`; every layer trains.
- **tfinetune**: what `fine_tune` runs in the recipe's fine-tune stage (`RECIPE[1]`):
  `build_classifier(mirror=True)`, every group unfrozen with BatchNorm kept frozen,
  `compile_stage` (one Adam per group in a `MultiOptimizer`, rates spread 10x, warm-up +
  cosine, weight averaging with momentum 0.9, label smoothing), the precision applied by
  `precision_scope`, and `fit` with `fine_tune`'s per-batch guard (`TrainingGuard`);
  **tfinetune_noguard** is the same compiled step without that callback.
- **timm**: `timm.create_model` (`resnet50`, `mobilenetv2_100`, `efficientnet_b0`),
  channels-last, `torch.compile`, `torch.optim.Adam`, bfloat16 `torch.autocast`: the stack
  a PyTorch user would pick instead.

The batch lives on the device (synthetic pixels): this times the step, not the input
pipeline. Keras variants run in one process per backbone, round robin (interleaved),
`--repeats` windows of `--steps` steps each, after a warm-up that includes compilation
(reported separately as `first_fit_s`). timm runs in its own process (JAX and PyTorch do
not share the GPU's memory well). Medians, with min and max, in milliseconds per step and
images per second, wall and CPU (`time.process_time`); GPU name, driver and every version.
Each backbone's results are written to `--out` as soon as they exist, and a `--budget-s`
leaves out what would not finish in time (named in the JSON as skipped).

    python benchmarks/gpu_train_step.py --out benchmarks/results/gpu_train_step_h200.json
    python benchmarks/gpu_train_step.py --smoke --out /tmp/smoke.json   # any CPU, tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKBONES = ("resnet50", "mobilenet_v2", "efficientnet_b0")
KERAS_APPS = {
    "resnet50": "ResNet50",
    "mobilenet_v2": "MobileNetV2",
    "efficientnet_b0": "EfficientNetB0",
}
TIMM_NAMES = {
    "resnet50": "resnet50",
    "mobilenet_v2": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_b0",
}
PRECISIONS = ("float32", "mixed_bfloat16")
NUM_CLASSES = 10
# The Keras variants; the first is the baseline of every ratio.
KERAS_VARIANTS = ("keras", "tfinetune", "tfinetune_noguard")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.steps, args.repeats, args.warmup = 32, 4, 2, 2, 1
        args.backbones = args.backbones or "mobilenet_v2"
    backbones = (args.backbones or ",".join(BACKBONES)).split(",")
    unknown = [b for b in backbones if b not in KERAS_APPS]
    if unknown:
        print(f"Unknown backbone(s) {unknown}: use some of {', '.join(BACKBONES)}.")
        return 2
    if args.child:
        return _child(args)
    return _parent(args, backbones)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings for a CPU")
    parser.add_argument("--backbones", default="", help=f"comma-separated ({','.join(BACKBONES)})")
    parser.add_argument("--frameworks", default="keras,timm", help="keras, timm or both")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--size", type=int, default=224, help="image size in pixels")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=4, help="timed windows per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps after compiling")
    parser.add_argument("--weights-dir", default="", help="ImageNet weight files, if any")
    parser.add_argument("--budget-s", type=float, default=0.0, help="stop starting work after")
    parser.add_argument("--out", default="", help="the JSON file to write")
    parser.add_argument("--child", choices=("keras", "timm"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    return parser


# === the parent: one child process per backbone and framework ===

# Rough seconds a child needs (start-up and compiling dominate), to respect --budget-s;
# replaced by the longest child of the same framework once one has run.
NEEDS_S = {"keras": 150.0, "timm": 100.0}


def _parent(args: argparse.Namespace, backbones: list[str]) -> int:
    start = time.monotonic()
    frameworks = [f for f in args.frameworks.split(",") if f]
    result = {
        "settings": {k: getattr(args, k) for k in ("size", "batch", "steps", "repeats",
                                                   "warmup", "precisions", "smoke")},
        "environment": _environment(),
        "runs": [],
    }  # fmt: skip
    print(json.dumps(result["environment"], indent=1), flush=True)
    needs = dict(NEEDS_S)
    for backbone in backbones:
        for framework in frameworks:
            left = args.budget_s - (time.monotonic() - start) if args.budget_s else None
            missing = _missing(framework)
            if missing:
                result["runs"].append(_skipped(backbone, framework, missing))
            elif left is not None and left < needs[framework]:
                need = needs[framework]
                reason = f"skipped: {left:.0f} s of the budget left, about {need:.0f} needed"
                result["runs"].append(_skipped(backbone, framework, reason))
            else:
                rows = _run_child(args, backbone, framework, left)
                result["runs"].extend(rows)
                took = [r["child_wall_s"] for r in rows if "child_wall_s" in r]
                if took and "ms_per_step" in rows[0]:
                    needs[framework] = max(took)  # the latest backbone's, for the next
            _write(args.out, result)
    _print_table(result)
    _write(args.out, result)
    return 0 if any("ms_per_step" in r for r in result["runs"]) else 1


def _missing(framework: str) -> str:
    """Why `framework` cannot run here ("" when it can)."""
    needs = {"keras": ("keras",), "timm": ("torch", "timm")}[framework]
    absent = [n for n in needs if importlib.util.find_spec(n) is None]
    return f"skipped: {', '.join(absent)} not installed" if absent else ""


def _skipped(backbone: str, framework: str, reason: str) -> dict:
    return {"backbone": backbone, "framework": framework, "status": reason}


def _run_child(args, backbone: str, framework: str, left: float | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        command = [sys.executable, __file__, "--child", framework, "--backbones", backbone,
                   "--child-out", str(out), *_passed_on(args)]  # fmt: skip
        env = dict(os.environ)
        if framework == "keras":
            env.setdefault("KERAS_BACKEND", "jax" if _has("jax") else "tensorflow")
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        print(f"\n=== {backbone} / {framework} ===", flush=True)
        began = time.monotonic()
        try:
            done = subprocess.run(command, env=env, timeout=left, check=False)
            ended = f"failed: exit {done.returncode}"
        except subprocess.TimeoutExpired:
            ended = "stopped: the budget ran out"
        # The child writes its rows after each precision: keep what it finished.
        rows = json.loads(out.read_text()) if out.exists() else []
        if len(rows) < len(args.precisions.split(",")):
            rows.append(_skipped(backbone, framework, ended))
        for row in rows:
            row["child_wall_s"] = round(time.monotonic() - began, 1)
        return rows


def _passed_on(args: argparse.Namespace) -> list[str]:
    names = ("precisions", "size", "batch", "steps", "repeats", "warmup", "weights_dir")
    return [x for n in names for x in (f"--{n.replace('_', '-')}", str(getattr(args, n)))]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _environment() -> dict:
    facts = {"python": platform.python_version(), "machine": platform.machine(),
             "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip
    for name in ("jax", "jaxlib", "keras", "torch", "timm", "numpy", "tensorflow", "tfinetune"):
        if _has(name):
            try:
                from importlib.metadata import version

                facts[name] = version(name)
            except Exception:  # a version is a nicety
                facts[name] = "installed"
    try:
        query = "name,driver_version,memory.total"
        line = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        facts["gpu"], facts["driver"], facts["gpu_memory"] = [p.strip() for p in line.split(",")]
        cuda = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        facts["cuda_driver_api"] = next(
            (w.split()[0] for w in cuda.stdout.split("CUDA Version:")[1:]), ""
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        facts["gpu"] = "none"
    return facts


def _write(path: str, result: dict) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n")
    partial.replace(target)


def _print_table(result: dict) -> None:
    print(
        "\n| backbone | precision | variant | batch | ms/step | images/s | vs keras | first fit s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = {(r["backbone"], r.get("precision")): r for r in result["runs"]
            if r.get("variant") == "keras" and "ms_per_step" in r}  # fmt: skip
    for r in result["runs"]:
        if "ms_per_step" not in r:
            print(f"| {r['backbone']} | | {r['framework']} | | {r['status']} | | | |")
            continue
        ref = base.get((r["backbone"], r["precision"]))
        ratio = f"{r['images_per_s'] / ref['images_per_s']:.2f}x" if ref else ""
        print(f"| {r['backbone']} | {r['precision']} | {r['variant']} | {r['batch']} | "
              f"{r['ms_per_step']:.1f} | {r['images_per_s']:.0f} | {ratio} | "
              f"{r.get('first_fit_s', '')} |")  # fmt: skip


# === the children ===


def _child(args: argparse.Namespace) -> int:
    backbone = args.backbones.split(",")[0]
    rows = []
    for precision in args.precisions.split(","):
        runner = _keras_rows if args.child == "keras" else _timm_rows
        try:
            rows.extend(runner(args, backbone, precision))
        except Exception as err:  # one failure must not lose the others
            import traceback

            traceback.print_exc()
            rows.append({"backbone": backbone, "framework": args.child, "precision": precision,
                         "status": f"failed: {type(err).__name__}: {str(err)[:300]}"})  # fmt: skip
        Path(args.child_out).write_text(json.dumps(rows, indent=1))
    return 0


def _summary(times: list[float], cpu: list[float], steps: int, batch: int) -> dict:
    per_step = [t / steps for t in times]
    median = statistics.median(per_step)
    return {
        "ms_per_step": round(1000 * median, 3),
        "ms_per_step_min": round(1000 * min(per_step), 3),
        "ms_per_step_max": round(1000 * max(per_step), 3),
        "images_per_s": round(batch / median, 1),
        "cpu_ms_per_step": round(1000 * statistics.median(c / steps for c in cpu), 3),
        "windows": len(times),
    }


def _keras_rows(args, backbone: str, precision: str) -> list[dict]:
    import keras
    import numpy as np

    from tfinetune.models.classifier import build_classifier
    from tfinetune.training.freezing import layer_groups
    from tfinetune.training.guards import TrainingGuard
    from tfinetune.training.losses import default_metrics, resolve_loss
    from tfinetune.training.performance import precision_scope, resolve_performance
    from tfinetune.training.recipe import RECIPE, RECIPE_LABEL_SMOOTHING
    from tfinetune.training.step import OwnWeights, compile_stage, optimizer_factory

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, *shape), dtype="float32") * 255).astype("float32")
    y = rng.integers(0, NUM_CLASSES, args.batch).astype("int32")
    if keras.config.backend() == "jax":
        import jax

        x, y = jax.device_put(x), jax.device_put(y)  # the batch lives on the device

    def batches():
        while True:
            yield x, y

    # Plain Keras: the global policy set before building, as Keras's guide does it.
    keras.config.set_dtype_policy(precision)
    base = getattr(keras.applications, KERAS_APPS[backbone])(
        include_top=False, weights=None, input_shape=shape, pooling="avg"
    )
    inputs = keras.Input(shape)
    hidden = keras.layers.Dropout(0.2)(base(inputs))
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(hidden)
    plain = keras.Model(inputs, outputs)
    plain.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=True)  # fmt: skip
    keras.config.set_dtype_policy("float32")

    # tfinetune: the recipe's fine-tune stage, as fine_tune compiles it.
    weights = _weights_file(args.weights_dir, backbone, args.size)
    model = build_classifier(backbone, NUM_CLASSES, weights=weights, image_size=args.size,
                             mirror=True)  # fmt: skip
    performance = resolve_performance(precision, True)
    scope = precision_scope(model, performance.precision)
    scope.__enter__()
    try:
        groups = [g.name for g in layer_groups(model)]
        stage = RECIPE[1]
        compile_stage(
            model, stage, groups,
            loss=resolve_loss("sparse_categorical_crossentropy", RECIPE_LABEL_SMOOTHING),
            metrics=default_metrics(), make_optimizer=optimizer_factory("adam", ema_momentum=0.9),
            total_steps=10_000, performance=performance,
        )  # fmt: skip
        variants = {
            "keras": (plain, []),
            "tfinetune": (model, [TrainingGuard(stage.name), OwnWeights()]),
            "tfinetune_noguard": (model, [OwnWeights()]),
        }
        first = {}
        for name in ("keras", "tfinetune"):  # compile and warm up (the guard shares the step)
            net, callbacks = variants[name]
            began = time.perf_counter()
            net.fit(batches(), steps_per_epoch=1, epochs=1, verbose=0, callbacks=callbacks)
            _sync(net)
            first[name] = round(time.perf_counter() - began, 2)
            net.fit(batches(), steps_per_epoch=args.warmup, epochs=1, verbose=0,
                    callbacks=callbacks)  # fmt: skip
            _sync(net)
        first["tfinetune_noguard"] = first["tfinetune"]
        times = {name: [] for name in variants}
        cpu = {name: [] for name in variants}
        order = list(variants)
        for repeat in range(args.repeats):
            for name in order[repeat % 3 :] + order[: repeat % 3]:  # rotated: no fixed slot
                net, callbacks = variants[name]
                _sync(net)
                wall, proc = time.perf_counter(), time.process_time()
                net.fit(batches(), steps_per_epoch=args.steps, epochs=1, verbose=0,
                        callbacks=callbacks)  # fmt: skip
                _sync(net)
                times[name].append(time.perf_counter() - wall)
                cpu[name].append(time.process_time() - proc)
        rows = []
        for name, (net, _) in variants.items():
            rows.append({
                "backbone": backbone, "framework": "keras", "backend": keras.config.backend(),
                "variant": name, "precision": precision, "batch": args.batch,
                "size": args.size, "jit_compile": bool(net.jit_compile),
                "trainable_weights": len(net.trainable_weights),
                "optimizer": type(net.optimizer).__name__,
                "weights": str(weights) if weights and net is model else None,
                "first_fit_s": first[name],
                **_summary(times[name], cpu[name], args.steps, args.batch),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        scope.__exit__(None, None, None)


def _sync(model) -> None:
    """Wait for the device: read a trained weight back (JAX and TensorFlow dispatch ahead)."""
    import keras

    keras.ops.convert_to_numpy(model.trainable_weights[-1])


def _weights_file(folder: str, backbone: str, size: int):
    """A local ImageNet weight file for the backbone, if `folder` has one (else None)."""
    if not folder or backbone != "mobilenet_v2":
        return None
    found = Path(folder) / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"
    return found if found.exists() else None


def _timm_rows(args, backbone: str, precision: str) -> list[dict]:
    import timm
    import torch

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    bf16 = precision != "float32"
    model = timm.create_model(TIMM_NAMES[backbone], pretrained=False, num_classes=NUM_CLASSES)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    compiled = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device) * 255
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (args.batch,), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(compiled(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    began = time.perf_counter()
    step()
    sync()
    first = round(time.perf_counter() - began, 2)
    for _ in range(args.warmup):
        step()
    sync()
    times, cpu = [], []
    for _ in range(args.repeats):
        wall, proc = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        sync()
        times.append(time.perf_counter() - wall)
        cpu.append(time.process_time() - proc)
    row = {
        "backbone": backbone, "framework": "timm", "variant": "timm",
        "timm_model": TIMM_NAMES[backbone], "precision": precision,
        "autocast": "bfloat16" if bf16 else None, "batch": args.batch, "size": args.size,
        "channels_last": True, "torch_compile": True, "first_fit_s": first,
        **_summary(times, cpu, args.steps, args.batch),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return [row]


if __name__ == "__main__":
    sys.exit(main())
