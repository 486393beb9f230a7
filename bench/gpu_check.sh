#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (see README "Benchmarks"): the default training run
# (bf16 + SDPA by default there) and the benchmark. Results go to $OUT (or ./gpu_results).
set -uo pipefail
OUT=${OUT:-gpu_results}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then  # packages missing on the machine, carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)"
echo "== default training (python train.py) =="
( time timeout 200 python3 train.py --output_dir "$OUT/default_run" --disable_tqdm true ) > "$OUT/train.log" 2>&1
grep -E "eval_loss|done:|Error|error" "$OUT/train.log" | tail -12; tail -3 "$OUT/train.log"
cp "$OUT/default_run/loss_plot.png" "$OUT/default_run/all_results.json" "$OUT/" 2>/dev/null
rm -rf "$OUT/default_run"
echo "== benchmark =="
timeout 330 python3 bench/benchmark.py --shakespeare .gpu_data/tinyshakespeare.txt --json "$OUT/results-cuda.json" 2>&1 | tee "$OUT/bench.md" | grep -v "^  training"
