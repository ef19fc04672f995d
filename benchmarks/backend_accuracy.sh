#!/usr/bin/env bash
# The same `tfinetune train` on Keras's TensorFlow and JAX backends, seed by seed: hymenoptera,
# MobileNetV2 0.35 with the real ImageNet weights, 96 px, 2 head + 2 fine-tune epochs.
# Usage: bash benchmarks/backend_accuracy.sh OUT_DIR SEED... ; appends to OUT_DIR/results.txt
# ("backend seed rc=N SECONDS s ACCURACY"). Run in the project's environment, nothing beside it.
set -u
out=$1; shift
assets=${TFINETUNE_ASSETS:-$(dirname "$0")/../../shared/assets}
H=$assets/datasets/hymenoptera_data
W=$assets/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5
mkdir -p "$out"
for seed in "$@"; do for b in tensorflow jax; do
  run=$out/r_${b}_$seed
  rm -rf "$run"
  s=$(date +%s)
  tfinetune train --data "$H/train" --val-data "$H/val" --backbone mobilenet_v2_035 \
    --weights "$W" --image-size 96 --freeze-epochs 2 --epochs 2 --seed "$seed" --backend "$b" \
    --out "$run" > "$out/log_${b}_$seed.txt" 2>&1
  rc=$?
  accuracy=$(python -c "import json; print(json.load(open('$run/metrics.json'))['accuracy'])" 2>&1)
  echo "$b $seed rc=$rc $(( $(date +%s) - s )) s $accuracy" >> "$out/results.txt"
done; done
