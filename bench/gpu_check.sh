#!/usr/bin/env bash
# The trainer on one GPU, in under 5 minutes: tokens/s, MFU and peak memory of the paper's
# model (depth 8, aspect 64, head 128, context 2048, bf16, torch.compile) with each attention
# path for the short-window layers, and the val_bpb of a 2-minute run.
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default OUT_DIR: runs/gpu-check)
#
# Needs a CUDA build of torch 2.13.0 and the trainer's dependencies on `python` (the trainer
# image has both; PYTHON=... picks another interpreter). The corpus is CORPUS, a folder of
# parquet shards (local or s3://, e.g. climbmix), else this interpreter's standard library
# (about 2M tokens): on that, 2 minutes of the paper's model make dozens of passes, so its
# val_bpb checks the GPU path end to end but is no figure to compare with the paper's.
# Prints a Markdown table for docs/benchmarks.md; each run's record is OUT_DIR/<path>/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-check}
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD/trainer-image${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch: this check needs a GPU"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
EOF

# 1. corpus and tokenizer at the paper's vocabulary (about 20 s)
"$PYTHON" -m stagescreen_trainer.prepare --out "$OUT/corpus" --vocab 8192 \
    ${CORPUS:+--source "$CORPUS" --max-bytes 2000000000}

# 2. one run per attention path; the paper's recipe is the trainer's default configuration.
# As in a Job: HOME cannot be written (a read-only root filesystem), only STAGESCREEN_CACHE
# can, so torch.compile's Inductor and Triton caches must land there (step 3 counts them).
touch "$OUT/home-is-a-file"
run() {  # run NAME TIME_BUDGET EVAL_TOKENS [VAR=VALUE ...]
    local name=$1 budget=$2 eval_tokens=$3
    shift 3
    rm -rf "${OUT:?}/$name" "${OUT:?}/cache-$name"
    env "$@" HOME="$OUT/home-is-a-file/home" STAGESCREEN_CACHE="$OUT/cache-$name" \
        TIME_BUDGET="$budget" EVAL_TOKENS="$eval_tokens" COMPILE=1 PROGRESS_EVERY=15 \
        DATA_URI="$OUT/corpus/shards" TOKENIZER_URI="$OUT/corpus/tokenizer" \
        RESULT_URI="$OUT/$name" CHECKPOINT_EVERY=0 RUN_ID="gpu-check-$name" \
        "$PYTHON" -m stagescreen_trainer | tee "$OUT/$name.log" | grep -E "^(step|device|val_bpb)"
}
run sdpa-band-mask 20 4194304 ATTENTION=sdpa
run flex-block-mask 120 20971520 ATTENTION=flex

# 3. the table
"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("\n| attention kernels | budget | steps | tokens/s | MFU | peak memory | val_bpb | compiled |")
print("|---|---|---|---|---|---|---|---|")
for name in ("sdpa-band-mask", "flex-block-mask"):
    r = json.loads((out / name / "result.json").read_text())
    compiled = "yes" if r["compiled"] else f"no ({r['compile_error'] or 'COMPILE=0'})"
    print(
        f"| {r['attention']} | {r['budget_s']:.0f} s | {r['steps']} | {r['tokens_per_s']:,.0f} "
        f"| {100 * r['mfu']:.1f}% ({r['peak_flops_source']}) "
        f"| {r['peak_memory_bytes'] / 2**30:.1f} GiB | {r['val_bpb']:.4f} | {compiled} |"
    )
for name in ("sdpa-band-mask", "flex-block-mask"):
    cache = out / f"cache-{name}"
    files = sum(1 for path in cache.rglob("*") if path.is_file())
    print(f"\n{name}: {files} cache files under STAGESCREEN_CACHE (HOME unwritable)")
EOF
