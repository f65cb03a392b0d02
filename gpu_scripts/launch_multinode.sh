#!/usr/bin/env bash
# Start this node's persona_jax training process of a multi-node GPU job, without SLURM.
#
# JAX runs one process per node here, each driving all of the node's GPUs; every node runs
# this script with the same coordinator and process count and its own PROCESS_ID. The values
# are handed to `persona_jax.parallel.distributed.maybe_initialize` via PERSONA_JAX_* variables.
set -euo pipefail

PROG=${0##*/}
case ${BASH_SOURCE[0]} in
  */*) SCRIPT_DIR=$(cd -- "${BASH_SOURCE[0]%/*}" && pwd) ;;
  *) SCRIPT_DIR=$(pwd) ;;
esac
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)

read -r -d '' USAGE <<EOF2 || true
Usage: COORDINATOR_ADDRESS=HOST:PORT NUM_PROCESSES=N PROCESS_ID=I \\
         $PROG [options] [-- extra train.py flags]

Run on every node at about the same time (each waits up to 5 minutes for the others).

Environment (one value per node for PROCESS_ID, the same everywhere for the others):
  COORDINATOR_ADDRESS  host:port of the node with PROCESS_ID=0; the port must be free there
                       and reachable from every node
  NUM_PROCESSES        number of nodes in the job
  PROCESS_ID           this node's index, 0 .. NUM_PROCESSES-1
  LOCAL_DEVICE_IDS     optional: GPUs this process uses, e.g. 0,1,2,3 (default: all)

Options (environment variable in brackets):
  --config FILE        config file (default: configs/patient.py:gpu) [TRAIN_CONFIG]
  --workdir DIR        run directory on a filesystem every node sees [TRAIN_WORKDIR] (required)
  --python PYTHON      interpreter (default: .venv/bin/python of the repository if present,
                       else python3) [PYTHON]
  --dry-run            print the command, prefixed '+ ', and run nothing
  -h, --help           show this help

Example (two nodes, 10.0.0.1 is node 0):
  node 0: COORDINATOR_ADDRESS=10.0.0.1:12355 NUM_PROCESSES=2 PROCESS_ID=0 \\
            $PROG --workdir /shared/runs/patient-1
  node 1: COORDINATOR_ADDRESS=10.0.0.1:12355 NUM_PROCESSES=2 PROCESS_ID=1 \\
            $PROG --workdir /shared/runs/patient-1
EOF2

note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage_error() {
  note "error: $*"
  printf "Run '%s --help' for usage.\n" "$PROG" >&2
  exit 2
}

# One shell word that reads back as $1 (`--flag=value` quotes only the value).
quote() {
  local s=$1 safe='^[A-Za-z0-9_@%+=:,./-]+$' flag='^(--[A-Za-z0-9_.-]+=)(.*)$' q="'\\''"
  if [[ $s =~ $safe ]]; then
    printf '%s' "$s"
  elif [[ $s =~ $flag ]]; then
    local value=${BASH_REMATCH[2]}
    printf '%s' "${BASH_REMATCH[1]}"
    quote "$value"
  else
    printf "'%s'" "${s//\'/$q}"
  fi
}

CONFIG=${TRAIN_CONFIG:-configs/patient.py:gpu}
WORKDIR=${TRAIN_WORKDIR:-}
PYTHON=${PYTHON:-}
DRY_RUN=0
EXTRA=()

while (($#)); do
  arg=$1
  case $arg in
    --)
      shift
      EXTRA=("$@")
      break
      ;;
    --dry-run)
      DRY_RUN=1
      shift
      continue
      ;;
    -h | --help)
      printf '%s\n' "$USAGE"
      exit 0
      ;;
    --*=*)
      key=${arg%%=*}
      value=${arg#*=}
      shift
      ;;
    --*)
      key=$arg
      if (($# < 2)) || [[ $2 == --* ]]; then usage_error "$key needs a value"; fi
      value=$2
      shift 2
      ;;
    *) usage_error "unexpected argument '$arg' (extra train.py flags go after --)" ;;
  esac
  case $key in
    --config) CONFIG=$value ;;
    --workdir) WORKDIR=$value ;;
    --python) PYTHON=$value ;;
    *) usage_error "unknown option '$key'" ;;
  esac
done

missing=()
for var in COORDINATOR_ADDRESS NUM_PROCESSES PROCESS_ID; do
  [[ -n ${!var:-} ]] || missing+=("$var")
done
((${#missing[@]} == 0)) || usage_error "set ${missing[*]} (see --help)"
[[ -n $WORKDIR ]] || usage_error "missing --workdir (or TRAIN_WORKDIR): a directory every node sees"
[[ $COORDINATOR_ADDRESS =~ ^[^[:space:]]+:[0-9]+$ ]] ||
  usage_error "COORDINATOR_ADDRESS must be host:port, got '$COORDINATOR_ADDRESS'"
[[ $NUM_PROCESSES =~ ^[1-9][0-9]*$ ]] ||
  usage_error "NUM_PROCESSES must be a positive integer, got '$NUM_PROCESSES'"
if ! [[ $PROCESS_ID =~ ^[0-9]+$ ]] || ((10#$PROCESS_ID >= 10#$NUM_PROCESSES)); then
  usage_error "PROCESS_ID must be in 0..$((10#$NUM_PROCESSES - 1)), got '$PROCESS_ID'"
fi
LOCAL_DEVICE_IDS=${LOCAL_DEVICE_IDS:-}
[[ -z $LOCAL_DEVICE_IDS || $LOCAL_DEVICE_IDS =~ ^[0-9]+(,[0-9]+)*$ ]] ||
  usage_error "LOCAL_DEVICE_IDS must look like 0,1,2,3, got '$LOCAL_DEVICE_IDS'"

if [[ -z $PYTHON ]]; then
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

cmd=(env
  PERSONA_JAX_COORDINATOR="$COORDINATOR_ADDRESS"
  PERSONA_JAX_NUM_PROCESSES="$((10#$NUM_PROCESSES))"
  PERSONA_JAX_PROCESS_ID="$((10#$PROCESS_ID))")
[[ -z $LOCAL_DEVICE_IDS ]] || cmd+=(PERSONA_JAX_LOCAL_DEVICE_IDS="$LOCAL_DEVICE_IDS")
cmd+=("$PYTHON" train.py --config="$CONFIG" --config.workdir="$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"})

line="+ cd $(quote "$REPO_ROOT") && "
for a in "${cmd[@]}"; do line+="$(quote "$a") "; done
if ((DRY_RUN)); then
  printf '%s\n' "${line% }"
  exit 0
fi
printf '%s\n' "${line% }" >&2
cd -- "$REPO_ROOT"
exec "${cmd[@]}"
