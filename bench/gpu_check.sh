#!/usr/bin/env bash
# The GPU check, as one script for a lent GPU machine (see README "Training on a GPU"): the default training path
# (--precision auto --compile auto) against plain fp32 at every preset, tokens/s and MFU. Extra arguments go to
# bench/speed_defaults.py (e.g. --explore gpt2:bf16/false). Results go to $OUT (or ./gpu_results).
set -uo pipefail
OUT=${OUT:-gpu_results}; mkdir -p "$OUT"
WHEELS=${WHEELS:-.whl}  # packages missing on the machine, carried as wheels
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site
  if ! python3 -c "import transformers, datasets" 2>"$OUT/import_error.txt"; then  # keep the machine's own then
    rm -rf /tmp/site; ls "$WHEELS"/*.whl | grep -v -E "transformers|tokenizers" | xargs python3 -m pip install -q \
      --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
  fi
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)"
timeout "${BENCH_TIMEOUT:-380}" python3 -m bench.speed_defaults --json "$OUT/results-cuda.json" "$@" 2>&1 \
  | grep -v -E "Tokenizing|examples/s" | tee "$OUT/speed_defaults.md"
