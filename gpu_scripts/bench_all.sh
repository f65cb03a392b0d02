#!/usr/bin/env bash
# Every benchmark on one GPU in one go, each against its baseline measured in the same
# process, with a time limit per step so one failure cannot eat the rest. Each step's last
# output line (one JSON object) is collected in OUT_DIR/bench.jsonl; logs go beside it.
#
#   gpu_scripts/bench_all.sh OUT_DIR [TOKENIZER_DIR]
#
# Install first (pip install -e ".[gpu,dev]"; on a machine with no network carry the wheels
# of the missing packages, gguf, grain and ml-collections among them). The SmolLM2 *shape*
# runs with random weights (decoding never stops early, so throughput does not depend on
# the weights, and no model asset has to travel); the episode benchmark's tokenizer comes
# from TOKENIZER_DIR (a HF directory, weights not needed; default: the fetched asset).
# PERSONA_JAX_SMALL=1 shrinks every size so the script itself can be checked on a CPU.
set -u
cd "$(dirname "$0")/.." || exit 1
out=${1:?usage: bench_all.sh OUT_DIR [TOKENIZER_DIR]}
tok=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}
tok_args=()
[ -n "$tok" ] && tok_args=(--model_dir "$tok")

if [ "${PERSONA_JAX_SMALL:-0}" = 1 ]; then
  b_big=4 b_mid=2 p_len=16 n_new=8 up_b=2 up_len=64 ep_b=2 ep_new=8 shape=tiny big=tiny t_step=300
else
  b_big=256 b_mid=32 p_len=128 n_new=64 up_b=4 up_len=1024 ep_b=64 ep_new=48 shape=smollm2 big=llama-1b t_step=120
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
  2>&1 | tee "$out/gpu.txt"
$py - <<'EOF' 2>&1 | tee -a "$out/gpu.txt"
import importlib
for m in ("jax", "flax", "optax", "transformers", "torch", "grain", "ml_collections"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(m, "MISSING", e)
import jax
print("jax devices", jax.devices())
EOF

: >"$out/bench.jsonl"
step() {  # step NAME SECONDS ARGS...
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T)): $*"
  timeout "$limit" "$py" -m persona_jax.bench "$@" >"$out/$name.log" 2>&1
  local rc=$?
  grep -v "Loading weights" "$out/$name.log" | tail -n 8
  if [ $rc -eq 0 ]; then tail -n 1 "$out/$name.log" >>"$out/bench.jsonl"; else echo "!! $name rc=$rc"; fi
}

step sampler_b${b_big}_bf16 "$t_step" sampler --model "$shape" --random_weights --dtype bfloat16 \
  --batch "$b_big" --prompt_len "$p_len" --new_tokens "$n_new" --roofline "${tok_args[@]}"
step sampler_b${b_big}_f32 "$t_step" sampler --model "$shape" --random_weights --dtype float32 \
  --batch "$b_big" --prompt_len "$p_len" --new_tokens "$n_new" --roofline --repeats 2 "${tok_args[@]}"
step update_${shape}_bf16 "$t_step" update --model "$shape" --batch "$up_b" --seq_len "$up_len" \
  --dtype bfloat16 --algorithm rloo
step episode_b${ep_b}_bf16 $((t_step + 30)) episode --model "$shape" --random_weights --dtype bfloat16 \
  --batch "$ep_b" --turns 2,4 --new_tokens "$ep_new" --repeats 2 "${tok_args[@]}"
step sampler_b8_bf16 100 sampler --model "$shape" --random_weights --dtype bfloat16 \
  --batch 8 --prompt_len "$p_len" --new_tokens "$n_new" --roofline --repeats 2 "${tok_args[@]}"
step sampler_b${b_mid}_bf16 100 sampler --model "$shape" --random_weights --dtype bfloat16 \
  --batch "$b_mid" --prompt_len "$p_len" --new_tokens "$n_new" --roofline --repeats 2 "${tok_args[@]}"
step update_${big}_bf16 "$t_step" update --model "$big" --batch 4 --seq_len "$up_len" \
  --dtype bfloat16 --algorithm rloo
# The decode step of a small model is bound by per-layer loop trips, not bytes: fewer trips
# per token (layers unrolled per trip) at the cost of compile time.
for u in 3 6; do
  step sampler_b${b_big}_bf16_unroll$u 120 sampler --model "$shape" --random_weights \
    --dtype bfloat16 --batch "$b_big" --prompt_len "$p_len" --new_tokens "$n_new" --roofline \
    --repeats 2 --scan_unroll "$u" "${tok_args[@]}"
done
# The same loop trips captured as CUDA graphs (XLA command buffers for while loops and
# conditionals), which removes the per-kernel launch cost instead of the trips.
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL" \
  step sampler_b${b_big}_bf16_cmdbuf 120 sampler --model "$shape" --random_weights \
  --dtype bfloat16 --batch "$b_big" --prompt_len "$p_len" --new_tokens "$n_new" --roofline \
  --repeats 2 "${tok_args[@]}"
echo "results: $out/bench.jsonl"
cat "$out/bench.jsonl"
