#!/usr/bin/env bash
# Every benchmark on one GPU, in one go, each against its baseline measured in the same run.
# Usage: gpu_scripts/bench_all.sh [OUT_DIR]   (install first: pip install -e ".[gpu,dev]")
# Each benchmark's last output line is one JSON object; they are collected in OUT_DIR/bench.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench_out}
mkdir -p "$out"
py=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
"$py" -m persona_jax.assets fetch
run() {
  local name=$1
  shift
  echo "== $name: $*"
  "$py" -m persona_jax.bench "$@" 2>&1 | tee "$out/$name.log"
  tail -n 1 "$out/$name.log" >>"$out/bench.jsonl"
}
: >"$out/bench.jsonl"
run sampler_smollm2_b256 sampler --batch 256 --prompt_len 128 --new_tokens 64
run sampler_llama1b_b256 sampler --model llama-1b --batch 256 --prompt_len 128 --new_tokens 64
run update_llama1b_2048 update --model llama-1b --batch 8 --seq_len 2048 --dtype bfloat16
run update_smollm2 update --model smollm2 --batch 16 --seq_len 1024 --dtype bfloat16
run episode_smollm2 episode --batch 64 --turns 2,4,8 --new_tokens 48
run judge judge --lines 256
echo "results: $out/bench.jsonl"
