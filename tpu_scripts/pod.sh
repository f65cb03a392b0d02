#!/usr/bin/env bash
# Cloud TPU VM pod slices for persona_jax: create, set up, train, read logs, stop, delete.
#
# A pod slice is several TPU VM hosts ("workers"). JAX runs one process per worker, every
# worker the same command, and `jax.distributed.initialize()` finds its peers from the TPU
# metadata; so each step here is one `gcloud compute tpus tpu-vm ... --worker=all` call.
# Only gcloud is needed on the machine running this script; --dry-run needs nothing at all.
set -euo pipefail

PROG=${0##*/}
case ${BASH_SOURCE[0]} in
  */*) SCRIPT_DIR=$(cd -- "${BASH_SOURCE[0]%/*}" && pwd) ;;
  *) SCRIPT_DIR=$(pwd) ;;
esac
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)

read -r -d '' USAGE <<EOF || true
Usage: $PROG COMMAND [options] [-- extra flags]

Manage a Cloud TPU VM pod slice running persona_jax training.

Commands:
  create   create the slice (gcloud compute tpus tpu-vm create); flags after -- go to gcloud
  setup    copy the project to every worker and pip install -e ".[tpu]" into a venv there
  train    start training on every worker in the background (nohup, log per worker);
           flags after -- are appended to the train.py command line
  logs     print the last lines of every worker's training log
  stop     stop training on every worker (the slice keeps running)
  delete   stop training and delete the slice (asks first unless --yes)

Options (environment variable in brackets):
  --name NAME          TPU slice name [TPU_NAME] (required)
  --zone ZONE          zone, e.g. us-central2-b [TPU_ZONE] (required)
  --project PROJECT    GCP project [GCP_PROJECT] (default: gcloud's configured project)
  --accelerator TYPE   accelerator type, e.g. v5litepod-16, v4-32, v6e-16 [TPU_TYPE] (create)
  --version VERSION    TPU runtime version [TPU_VERSION] (create; default from the type:
                       v6e v2-alpha-tpuv6e, v5p v2-alpha-tpuv5, v5e v2-alpha-tpuv5-lite,
                       v2-v4 tpu-ubuntu2204-base)
  --spot               create a Spot slice (cheaper, can be preempted) [TPU_SPOT=1]
  --repo URL           setup: git clone URL on every worker instead of copying this
                       checkout [TPU_REPO_URL]
  --ref REF            setup: git ref to copy/check out (default: HEAD) [TPU_GIT_REF]
  --python PYTHON      setup: interpreter for the venv, installed with apt when missing
                       (default: python3.11; the project needs >= 3.11) [TPU_PYTHON]
  --extras LIST        setup: pip extras of the project to install (default: tpu)
                       [TPU_PIP_EXTRAS]
  --remote-dir DIR     project directory on the workers, relative to the home directory
                       (default: persona_jax) [TPU_REMOTE_DIR]
  --config FILE        train: config file (default: configs/patient.py:tpu) [TRAIN_CONFIG]
  --workdir URL        train: run directory for checkpoints and logs, shared by all
                       workers, e.g. gs://bucket/runs/patient-1 [TRAIN_WORKDIR] (required)
  --lines N            logs: lines per worker (default: 100)
  --worker W           logs: worker index, or all (default: all)
  --internal-ip        ssh/scp to the workers' internal IPs (from a VM in the same network)
  --yes                delete: do not ask for confirmation
  --dry-run            print every command, one per line prefixed '+ ', and run none
  -h, --help           show this help

Examples:
  export TPU_NAME=persona-pod TPU_ZONE=us-central2-b
  $PROG create --accelerator v4-32 --spot
  $PROG setup
  $PROG train --workdir gs://my-bucket/runs/patient-1 -- --config.train.steps=2000
  $PROG logs --lines 50
  $PROG delete
EOF

note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  note "error: $*"
  exit 1
}
usage_error() {
  note "error: $*"
  printf "Run '%s --help' for usage.\n" "$PROG" >&2
  exit 2
}

# One shell word that reads back as $1; `--flag=value` keeps the flag readable and quotes
# only the value. Used for the printed commands and for the command strings sent to workers.
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

quote_all() {
  local out="" a
  for a in "$@"; do out+=" $(quote "$a")"; done
  printf '%s' "${out# }"
}

# Print the command (stdout in a dry run, stderr as a trace otherwise) and run it unless dry.
run() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(quote_all "$@")"
    return 0
  fi
  printf '+ %s\n' "$(quote_all "$@")" >&2
  "$@"
}

# ------------------------------------------------------------------------------ options

COMMAND=${1:-}
case $COMMAND in
  -h | --help | help)
    printf '%s\n' "$USAGE"
    exit 0
    ;;
  create | setup | train | logs | stop | delete) shift ;;
  "")
    printf '%s\n' "$USAGE" >&2
    exit 2
    ;;
  *)
    note "error: unknown command '$COMMAND'"
    printf '%s\n' "$USAGE" >&2
    exit 2
    ;;
esac

NAME=${TPU_NAME:-}
ZONE=${TPU_ZONE:-}
PROJECT=${GCP_PROJECT:-}
ACCELERATOR=${TPU_TYPE:-}
VERSION=${TPU_VERSION:-}
SPOT=${TPU_SPOT:-0}
REPO_URL=${TPU_REPO_URL:-}
REF=${TPU_GIT_REF:-}
PYTHON=${TPU_PYTHON:-python3.11}
EXTRAS=${TPU_PIP_EXTRAS:-tpu}
REMOTE_DIR=${TPU_REMOTE_DIR:-persona_jax}
CONFIG=${TRAIN_CONFIG:-configs/patient.py:tpu}
WORKDIR=${TRAIN_WORKDIR:-}
TAIL_LINES=100
WORKER=all
INTERNAL_IP=0
YES=0
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
    --spot | --internal-ip | --yes | --dry-run)
      case $arg in
        --spot) SPOT=1 ;;
        --internal-ip) INTERNAL_IP=1 ;;
        --yes) YES=1 ;;
        --dry-run) DRY_RUN=1 ;;
      esac
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
    *) usage_error "unexpected argument '$arg' (extra flags go after --)" ;;
  esac
  case $key in
    --name) NAME=$value ;;
    --zone) ZONE=$value ;;
    --project) PROJECT=$value ;;
    --accelerator) ACCELERATOR=$value ;;
    --version) VERSION=$value ;;
    --repo) REPO_URL=$value ;;
    --ref) REF=$value ;;
    --python) PYTHON=$value ;;
    --extras) EXTRAS=$value ;;
    --remote-dir) REMOTE_DIR=$value ;;
    --config) CONFIG=$value ;;
    --workdir) WORKDIR=$value ;;
    --lines) TAIL_LINES=$value ;;
    --worker) WORKER=$value ;;
    *) usage_error "unknown option '$key'" ;;
  esac
done

[[ -n $NAME ]] || usage_error "missing --name (or TPU_NAME)"
[[ -n $ZONE ]] || usage_error "missing --zone (or TPU_ZONE)"
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  usage_error "invalid TPU name '$NAME' (lowercase letters, digits and -, starting with a letter)"
[[ $ZONE =~ ^[a-z0-9-]+$ ]] || usage_error "invalid zone '$ZONE'"
[[ $REMOTE_DIR =~ ^[A-Za-z0-9_][A-Za-z0-9_./-]*$ && $REMOTE_DIR != *..* ]] ||
  usage_error "invalid --remote-dir '$REMOTE_DIR' (a plain path relative to the home directory)"
case $SPOT in 0 | 1) ;; *) usage_error "TPU_SPOT must be 0 or 1, got '$SPOT'" ;; esac
if ((${#EXTRA[@]})) && [[ $COMMAND != create && $COMMAND != train ]]; then
  usage_error "'$COMMAND' takes no extra flags after --"
fi

# Called by each command once its options are checked, before it runs or asks anything.
require_gcloud() {
  if ((!DRY_RUN)) && ! command -v gcloud >/dev/null 2>&1; then
    die "gcloud not found on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk) or use --dry-run"
  fi
}

LOCATION=(--zone="$ZONE")
[[ -z $PROJECT ]] || LOCATION+=(--project="$PROJECT")
SSH_OPTS=()
((!INTERNAL_IP)) || SSH_OPTS+=(--internal-ip)

# Run a shell command on the workers (all of them unless a worker is given).
on_workers() {
  local worker=$1 cmd=$2
  run gcloud compute tpus tpu-vm ssh "$NAME" "${LOCATION[@]}" --worker="$worker" \
    ${SSH_OPTS[@]+"${SSH_OPTS[@]}"} --command="$cmd"
}

# Remote snippets, run in the project directory on each worker. RUNNING_PID sets $pid to the
# training process if it is running, else to empty.
CD_REMOTE="cd $REMOTE_DIR 2>/dev/null || { echo \"\$(hostname): no ~/$REMOTE_DIR (run setup)\" >&2; exit 1; }"
RUNNING_PID="pid=\$(cat logs/train.pid 2>/dev/null || true); \
if [ -n \"\$pid\" ] && ! kill -0 \"\$pid\" 2>/dev/null; then pid=; fi"

# ------------------------------------------------------------------------------ commands

default_version() {
  case $1 in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    *) return 1 ;;
  esac
}

cmd_create() {
  [[ -n $ACCELERATOR ]] || usage_error "create needs --accelerator (or TPU_TYPE), e.g. v5litepod-16 or v4-32"
  [[ $ACCELERATOR =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] ||
    usage_error "invalid accelerator type '$ACCELERATOR' (expected e.g. v5litepod-16, v4-32)"
  if [[ -z $VERSION ]]; then
    VERSION=$(default_version "$ACCELERATOR") ||
      usage_error "no default runtime for '$ACCELERATOR': pass --version (or TPU_VERSION)"
  fi
  require_gcloud
  local args=(gcloud compute tpus tpu-vm create "$NAME" "${LOCATION[@]}"
    --accelerator-type="$ACCELERATOR" --version="$VERSION")
  ((!SPOT)) || args+=(--spot)
  run "${args[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
}

cmd_setup() {
  [[ $PYTHON =~ ^python3(\.[0-9]+)?$ ]] || usage_error "--python must look like python3.11, got '$PYTHON'"
  [[ $EXTRAS =~ ^[a-z0-9_-]+(,[a-z0-9_-]+)*$ ]] || usage_error "--extras must look like tpu,gcs, got '$EXTRAS'"
  [[ -z $REF || $REF =~ ^[A-Za-z0-9_][A-Za-z0-9_./-]*$ ]] || usage_error "invalid --ref '$REF'"
  require_gcloud
  local dir=$REMOTE_DIR fetch
  if [[ -n $REPO_URL ]]; then
    local url ref
    url=$(quote "$REPO_URL")
    ref=$(quote "${REF:-HEAD}")
    fetch="if [ ! -d $dir/.git ]; then git clone --quiet $url $dir; fi; \
git -C $dir remote set-url origin $url; git -C $dir fetch --quiet origin $ref; \
git -C $dir checkout --quiet --detach FETCH_HEAD"
  else
    local tarball=${TMPDIR:-/tmp}/persona_jax-src-$NAME.tar.gz
    local remote_tar=persona_jax-src.tar.gz
    if ((!DRY_RUN)) && [[ -n $(git -C "$REPO_ROOT" status --porcelain 2>/dev/null) ]]; then
      note "warning: uncommitted changes are not copied (git archive of ${REF:-HEAD})"
    fi
    run git -C "$REPO_ROOT" archive --format=tar.gz --output="$tarball" "${REF:-HEAD}"
    run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:$remote_tar" "${LOCATION[@]}" \
      --worker=all ${SSH_OPTS[@]+"${SSH_OPTS[@]}"}
    run rm -f "$tarball"
    fetch="mkdir -p $dir; tar -xzf $remote_tar -C $dir; rm -f $remote_tar"
  fi
  # Ubuntu 22.04 TPU images ship Python 3.10; apt has 3.11. The lock timeout covers the
  # unattended upgrades that hold the apt lock on freshly booted VMs.
  local apt="sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
  local install="set -e; \
if ! $PYTHON -c 'import ensurepip, venv' >/dev/null 2>&1; then \
$apt update -qq; $apt install -y -qq $PYTHON $PYTHON-venv; fi; \
$fetch; cd $dir; \
if [ ! -x .venv/bin/python ]; then $PYTHON -m venv .venv; fi; \
.venv/bin/python -m pip install --quiet --upgrade pip; \
.venv/bin/python -m pip install --quiet -e '.[$EXTRAS]'; \
.venv/bin/python -c \"import socket, jax; print(socket.gethostname(), 'ready: jax', jax.__version__)\""
  on_workers all "$install"
}

cmd_train() {
  [[ -n $WORKDIR ]] || usage_error "train needs --workdir (or TRAIN_WORKDIR), e.g. gs://bucket/runs/NAME"
  if [[ $WORKDIR != gs://* ]]; then
    note "warning: --workdir '$WORKDIR' is not a gs:// URL; every worker writes to its own" \
      "local disk, so checkpoints will not be complete anywhere"
  fi
  require_gcloud
  local train
  train="PYTHONUNBUFFERED=1 PERSONA_JAX_DISTRIBUTED=auto nohup .venv/bin/python train.py \
$(quote_all "--config=$CONFIG" "--config.workdir=$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"})"
  local remote="set -e; $CD_REMOTE; mkdir -p logs; $RUNNING_PID; \
if [ -n \"\$pid\" ]; then echo \"\$(hostname): training already running (pid \$pid); \
run '$PROG stop' first\" >&2; exit 1; fi; \
if [ -f logs/train.log ]; then mv -f logs/train.log logs/train.prev.log; fi; \
$train > logs/train.log 2>&1 < /dev/null & echo \$! > logs/train.pid; \
echo \"\$(hostname): training started, pid \$!, log ~/$REMOTE_DIR/logs/train.log\""
  on_workers all "$remote"
}

cmd_logs() {
  [[ $TAIL_LINES =~ ^[0-9]+$ ]] || usage_error "--lines must be a number, got '$TAIL_LINES'"
  [[ $WORKER =~ ^(all|[0-9]+)$ ]] || usage_error "--worker must be 'all' or an index, got '$WORKER'"
  require_gcloud
  local remote="$CD_REMOTE; $RUNNING_PID; \
echo \"===== \$(hostname): \${pid:+training running, pid }\${pid:-not running} =====\"; \
tail -n $TAIL_LINES logs/train.log 2>/dev/null || echo \"(no log at ~/$REMOTE_DIR/logs/train.log)\""
  on_workers "$WORKER" "$remote"
}

# Remote snippet: stop training (SIGTERM, then SIGKILL after 30 s) so the TPU is free again.
STOP="$CD_REMOTE; $RUNNING_PID; \
if [ -z \"\$pid\" ]; then echo \"\$(hostname): training not running\"; exit 0; fi; \
kill \"\$pid\"; i=0; \
while kill -0 \"\$pid\" 2>/dev/null && [ \$i -lt 30 ]; do sleep 1; i=\$((i + 1)); done; \
kill -9 \"\$pid\" 2>/dev/null || true; rm -f logs/train.pid; \
echo \"\$(hostname): training stopped (pid \$pid)\""

cmd_stop() {
  require_gcloud
  on_workers all "$STOP"
}

cmd_delete() {
  require_gcloud
  if ((!YES)); then
    if ((DRY_RUN)); then
      note "dry run: delete would ask for confirmation first (--yes skips it)"
    elif [[ -t 0 ]]; then
      local answer
      read -r -p "Delete TPU slice '$NAME' in $ZONE (training on it stops)? [y/N] " answer
      case $answer in
        y | Y | yes | YES) ;;
        *) die "not deleted" ;;
      esac
    else
      die "refusing to delete '$NAME' without confirmation (stdin is not a terminal): pass --yes"
    fi
  fi
  # Best effort: an unreachable or half-created slice is still deleted.
  on_workers all "$STOP" || note "warning: could not stop training on every worker; deleting anyway"
  run gcloud compute tpus tpu-vm delete "$NAME" "${LOCATION[@]}" --quiet
}

"cmd_$COMMAND"
