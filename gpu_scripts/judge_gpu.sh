#!/usr/bin/env bash
# The judge's GPU jobs in one go, each with its own time limit and log:
#   1. fine-tune the adapter judges from a pack (distill_judge.py --mode=finetune): the sweep,
#      selection on validation, test once, judges written to OUT_DIR/judge_lora/{all,half_b}
#      (copy them over persona_jax/judges/shipped and shipped_eval to ship them);
#   2. judge cost: the new reward judge (and the shipped one beside it) against the local LLM
#      judge on the same lines, same GPU.
#
#   gpu_scripts/judge_gpu.sh OUT_DIR PACK [FINETUNE_SECONDS] [BENCH_SECONDS]
#
# Needs the default SmolLM2 asset fetched (python -m persona_jax.assets fetch, or the GGUF
# placed in $PERSONA_JAX_CACHE and converted by the same command) and the packages of
# pyproject.toml. The pack comes from `distill_judge.py --mode=pack` wherever the release is;
# without the release here the cost benchmark reads lines made from the persona bank.
# Fine-tuning reads only the base weights, so MODEL may name the GGUF itself (no conversion,
# no tokenizer: a machine whose transformers rebuilds the GGUF tokenizer differently is fine).
# Extra `--config.x=y` overrides of the fine-tune run go in $FINETUNE_ARGS.
set -u
cd "$(dirname "$0")/.." || exit 1
out=${1:?usage: judge_gpu.sh OUT_DIR PACK [FINETUNE_SECONDS] [BENCH_SECONDS]}
pack=${2:?usage: judge_gpu.sh OUT_DIR PACK [FINETUNE_SECONDS] [BENCH_SECONDS]}
t_ft=${3:-900}
t_bench=${4:-300}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
$py -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$out/gpu.txt"

echo "== finetune ($(date +%T)), limit ${t_ft}s"
# shellcheck disable=SC2086  # FINETUNE_ARGS is a list of flags
timeout "$t_ft" "$py" distill_judge.py --config=configs/judge.py --mode=finetune \
  --config.finetune.pack="$pack" --config.finetune.out_dir="$out/judge_lora" \
  --config.finetune.export.all="$out/judge_lora/all" \
  --config.finetune.export.half_b="$out/judge_lora/half_b" ${MODEL:+--config.model_path="$MODEL"} \
  ${FINETUNE_ARGS:-} \
  >"$out/finetune.log" 2>&1
echo "finetune rc=$?"
grep -E "epoch [0-9]+:|budget|^\{" "$out/finetune.log" | tail -n 30

echo "== judge cost ($(date +%T)), limit ${t_bench}s"
# The freshly trained reward judge, with the shipped one timed beside it on the same lines.
judge_args=()
if [ -f "$out/judge_lora/all/judge_config.json" ]; then
  judge_args=(--judge_dir "$out/judge_lora/all" --compare persona_jax/judges/shipped)
fi
timeout "$t_bench" "$py" -m persona_jax.bench judge --lines "${BENCH_LINES:-256}" \
  --batch 64 --llm_batch "${LLM_BATCH:-64}" "${judge_args[@]}" >"$out/bench_judge.log" 2>&1
echo "bench rc=$?"
grep -v "Loading weights" "$out/bench_judge.log" | tail -n 12
