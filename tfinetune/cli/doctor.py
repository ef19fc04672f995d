"""`tfinetune doctor`: what this machine gives tfinetune, and what `auto` would choose here."""

from __future__ import annotations

import importlib

import tensorflow as tf

from tfinetune.models.catalogue import CATALOGUE
from tfinetune.models.weights import find_local_weights, weights_search_dirs
from tfinetune.runs.folder import devices, versions
from tfinetune.sizes import to_size
from tfinetune.training.distribution import replicas, resolve_strategy
from tfinetune.training.performance import resolve_determinism, resolve_performance


def diagnose() -> dict:
    """The facts `tfinetune doctor` prints, as a dict.

    Example:
    >>> facts = diagnose()
    >>> sorted(facts)[:3]
    ['auto_policy', 'auto_strategy', 'cuda']
    """
    build = tf.sysconfig.get_build_info()
    policy = resolve_performance()
    strategy = resolve_strategy("auto")
    return {
        "versions": versions(),
        "cuda": {
            "built_with_cuda": bool(build.get("is_cuda_build")),
            "cuda": build.get("cuda_version", ""),
            "cudnn": build.get("cudnn_version", ""),
        },
        "devices": devices(),
        # what a default `tfinetune train` runs: determinism off on a GPU, so XLA stays on
        "auto_policy": {**policy.to_dict(), "deterministic_ops": resolve_determinism()},
        "auto_strategy": {
            "strategy": type(strategy).__name__.lstrip("_"),
            "replicas": replicas(strategy),
        },
        "imports": {name: _import(name) for name in ("tensorflow_hub", "tensorflow_datasets")},
        "offline_weights": _offline_weights(),
    }


def _import(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as err:  # any failure to import is what the user needs to see
        return f"fails: {type(err).__name__}: {err}"
    return f"ok {getattr(module, '__version__', '')}".strip()


def _offline_weights() -> dict:
    found = {}
    for name, spec in CATALOGUE.items():
        if spec.weights_file_for(to_size(spec.default_size)) is None:
            continue  # no ImageNet weights (convnet_tiny)
        path = find_local_weights(spec, to_size(spec.default_size))
        found[name] = str(path) if path else ""
    return found


def format_diagnosis(facts: dict) -> str:
    """The report `tfinetune doctor` prints.

    Args:
        facts: what `diagnose` returned.

    Example:
    >>> "auto policy" in format_diagnosis(diagnose())
    True
    """
    v, c, p = facts["versions"], facts["cuda"], facts["auto_policy"]
    cuda = f"CUDA {c['cuda']}, cuDNN {c['cudnn']}" if c["built_with_cuda"] else "not a CUDA build"
    lines = [
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"TensorFlow build: {cuda}",
        "devices: " + ", ".join(_describe(d) for d in facts["devices"]),
        f"auto policy: precision {p['precision']}, XLA {'on' if p['jit_compile'] else 'off'}, "
        f"deterministic ops {'on' if p['deterministic_ops'] else 'off'}"
        f" ({p['device']}: {p['reason']})",
        f"auto strategy: {facts['auto_strategy']['strategy']}, "
        f"{facts['auto_strategy']['replicas']} replica(s)",
    ]
    lines += [f"import {name}: {status}" for name, status in facts["imports"].items()]
    weights = facts["offline_weights"]
    have = [f"  {name}: {path}" for name, path in weights.items() if path]
    lines.append(
        f"ImageNet weights available offline: {len(have)} of {len(weights)} backbones "
        f"(searched {', '.join(map(str, weights_search_dirs()))})"
    )
    lines += have
    return "\n".join(lines)


def _describe(device: dict) -> str:
    if device["type"] != "GPU":
        return f"{device['type']} ({device['name']})"
    return f"GPU {device['model']} (compute capability {device['compute_capability']})"
