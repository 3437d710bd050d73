#!/usr/bin/env bash
# GPU checks in one timed script, for a machine lent for minutes: the CUDA paths the CPU suite
# cannot reach, each step logged and timed on its own so that one failure does not hide the rest.
#
#   bash benchmarks/gpu_check.sh DATA_DIR WORK_DIR [DEADLINE_S]
#
#   1. env: GPU, torch, CUDA
#   2. tiny: text training on CUDA (bf16 autocast by training.dtype=auto), then greedy generation
#      with and without the KV cache from its checkpoint (the two must agree)
#   3. 1b: configs/model_1b.yaml, fixed 4-byte patches, 20 steps of 8 x 4096 bytes x 4 micro-steps;
#      bytes/s between step 10 and 20 and the MFU it means (model/params.py flops_per_byte)
#   4. hf: a tiny random GPT-2, Coconut stage 0 then stage 1 with --bf16 on CUDA
#   5. 1b-compile: step 3 with training.compile=true
#   6. prontoqa: `coconutblt reproduce prontoqa` until DEADLINE_S (default 480) from the start
# WORK_DIR/summary.txt has one line per step; logs and metrics are beside it.
# DEVICE=cpu BIG=configs/tiny.yaml STEPS=4 is a dry run of the script itself on a CPU.
set -u
DATA=${1:?DATA_DIR}
WORK=${2:?WORK_DIR}
DEADLINE=${3:-480}
DEVICE=${DEVICE:-cuda}
BIG=${BIG:-configs/model_1b.yaml}
STEPS=${STEPS:-20}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
START=$(date +%s)
mkdir -p "$WORK"
SUMMARY=$WORK/summary.txt
: >"$SUMMARY"

# step NAME LIMIT_S CMD...: run CMD into WORK/NAME.log, at most LIMIT_S and never past DEADLINE
step() {
    local name=$1 limit=$2 t0 rc left
    shift 2
    left=$((DEADLINE - ($(date +%s) - START)))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        echo "$name: skipped, $left s left" | tee -a "$SUMMARY"
        return
    fi
    t0=$(date +%s)
    timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    echo "$name: rc=$rc in $(($(date +%s) - t0)) s (limit $limit s)" | tee -a "$SUMMARY"
}

CLI="$PY -m coconutblt.cli"

step env 60 bash -c "nvidia-smi; $PY -c 'import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__, torch.cuda.is_available())'"

step tiny 90 $CLI train configs/tiny.yaml data.kind=text "data.train=[$DATA/text]" \
    training.steps=$((STEPS * 10)) training.log_every=10 training.device=$DEVICE --out "$WORK/tiny" --no-progress
prompt="It is a truth universally acknowledged, that"
step gen_cache 60 $CLI generate --ckpt "$WORK/tiny" --prompt "$prompt" --max-new-tokens 200 --device $DEVICE
step gen_nocache 60 $CLI generate --ckpt "$WORK/tiny" --prompt "$prompt" --max-new-tokens 200 --device $DEVICE --no-cache
# the generated text: every line but the last (the timing line)
if [ -s "$WORK/gen_cache.log" ] && cmp -s <(head -n -1 "$WORK/gen_cache.log") <(head -n -1 "$WORK/gen_nocache.log"); then
    echo "generate: cache == no-cache" | tee -a "$SUMMARY"
else
    echo "generate: cache != no-cache (diff in $WORK/gen_*.log)" | tee -a "$SUMMARY"
fi

big() {
    local name=$1
    shift
    step "$name" 150 $CLI train "$BIG" data.kind=text "data.train=[$DATA/text]" model.patcher=fixed \
        model.patch_size=4 training.steps=$STEPS training.log_every=$((STEPS / 2)) training.warmup_steps=5 \
        training.device=$DEVICE "$@" --out "$WORK/$name" --no-progress
    # bytes/s between the two logged steps: the first step's start-up (allocator, cuBLAS) left out
    $PY - "$WORK/$name/metrics.jsonl" "$BIG" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from coconutblt.model.config import ModelConfig
from coconutblt.model.params import flops_per_byte
from coconutblt.train.config import load_run_config
path, preset = sys.argv[1:]
try:
    recs = [r for r in map(json.loads, open(path)) if r.get("type") == "train"]
except FileNotFoundError:
    sys.exit(f"  no {path}")
cfg = load_run_config(preset, ["model.patcher=fixed", "model.patch_size=4"])
t = cfg.training
per_step = t.batch_size * t.grad_accum * cfg.data.seq_len
(a, b) = recs[0], recs[-1]
secs = lambda r: r["step"] * per_step / r["bytes_per_s"]
rate = (b["step"] - a["step"]) * per_step / (secs(b) - secs(a))
fpb = flops_per_byte(cfg.model, cfg.data.seq_len, 4.0)  # model FLOPs: recomputation not counted
print(f"  steps {a['step']}..{b['step']}: {rate:,.0f} bytes/s, {rate * fpb / 1e12:.1f} TFLOP/s "
      f"= {rate * fpb / 989e12:.1%} of 989 (H100/H200 bf16 dense peak); loss {a['loss']:.3f} -> {b['loss']:.3f}")
EOF
    rm -f "$WORK/$name"/*.pt # a 1B run's checkpoints are 20 GB
}
big 1b

step hf_base 60 $CLI hf tiny-base --data "$DATA/gsm8k/train.jsonl" --max-texts 500 --out "$WORK/hf/base"
step hf_stage0 90 $CLI hf train --base-model "$WORK/hf/base" --data "$DATA/gsm8k/train.jsonl" --stage 0 \
    --epochs 1 --lr 1e-3 --batch-size 16 --max-examples 256 --val-data "$DATA/gsm8k/test.jsonl" \
    --max-val-examples 16 --max-new-tokens 32 --device $DEVICE --bf16 --out "$WORK/hf/stage0"
step hf_stage1 90 $CLI hf train --load "$WORK/hf/stage0" --data "$DATA/gsm8k/train.jsonl" --stage 1 \
    --c-thought 2 --epochs 1 --lr 1e-3 --batch-size 16 --max-examples 256 --val-data "$DATA/gsm8k/test.jsonl" \
    --max-val-examples 16 --max-new-tokens 32 --device $DEVICE --bf16 --out "$WORK/hf/stage1"

big 1b_compile training.compile=true

step prontoqa 10000 $CLI reproduce prontoqa --data-dir "$DATA" --out "$WORK/prontoqa" --no-progress
echo "total: $(($(date +%s) - START)) s" | tee -a "$SUMMARY"
