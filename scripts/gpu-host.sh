#!/usr/bin/env bash
# GPU-host validation, run after `source /root/gpu-parts/setup.sh` (see docs/GPU-HOST.md):
#   bash scripts/gpu-host.sh tests            # GPU-marked tests -> $OUT/gpu-test-log.txt
#   bash scripts/gpu-host.sh model 1.5b       # build the random-weight model (cached for later calls)
#   bash scripts/gpu-host.sh bench ROWS...    # open-grpo bench on the seed shape (BENCH_ARGS: more options) -> $OUT/
#   bash scripts/gpu-host.sh validate ARGS... # TP probe / sanity runs (scripts/gpu_validation.py) -> $OUT/
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never multicast
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export OPEN_GRPO_CACHE=${OPEN_GRPO_CACHE:-/root/open_grpo_cache}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
what=${1:-tests}; shift || true
case "$what" in
  tests)
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 -c "import torch, vllm, trl, transformers; print('torch', torch.__version__, 'vllm', vllm.__version__, 'trl', trl.__version__, 'transformers', transformers.__version__)"
      python3 -m pytest -m gpu -v -p no:cacheprovider tests/test_gpu.py 2>&1
    } 2>&1 | tee "$OUT/gpu-test-log.txt"
    ;;
  model)
    python3 -c "from open_grpo.models import resolve_model; print(resolve_model('random:${1:-1.5b}'))"
    ;;
  bench)
    rows=$(IFS=,; echo "$*")
    touch /tmp/bench-start  # $OUT takes 8 files: copy only what this run wrote, not the committed results
    # BENCH_ARGS: more options, e.g. "--gpus 2 --accelerate zero3"
    # shellcheck disable=SC2086
    open-grpo bench --rows "${rows:-trl-default,open_grpo}" --steps "${BENCH_STEPS:-4}" --warmup "${BENCH_WARMUP:-2}" \
      ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/bench.log"
    find bench/results -newer /tmp/bench-start -type f \( -name '*.json' -o -name '*.png' \) -exec cp {} "$OUT"/ \;
    tar czf "$OUT/bench-logs.tgz" -C /tmp/open-grpo-bench . 2>/dev/null
    ;;
  validate)
    model=$(python3 -c "from open_grpo.models import resolve_model; print(resolve_model('random:1.5b'))")
    work=${VALIDATION_DIR:-/tmp/validation}
    python3 scripts/gpu_validation.py --model "$model" --out "$work" "$@" 2>&1 | tee "$OUT/validation.log"
    cp "$work"/*.json "$work"/*.png "$OUT"/ 2>/dev/null
    tar czf "$OUT/validation-logs.tgz" -C "$work" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.bin' . 2>/dev/null
    ;;
esac
