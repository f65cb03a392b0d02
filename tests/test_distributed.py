"""Multi-process start-up: how `maybe_initialize` decides, and a real 2-process CPU job.

The 2-process test starts two Python processes on localhost, 4 simulated CPU devices each,
connected through `maybe_initialize` from the same environment variables the launch scripts
set; both must see one 8-device job and agree with the single-process result.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import pytest

from persona_jax.parallel import distributed as dist
from persona_jax.parallel.distributed import (
    ENV_COORDINATOR,
    ENV_LOCAL_DEVICE_IDS,
    ENV_MODE,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    InitSettings,
    maybe_initialize,
    resolve_settings,
)

ENV3 = {ENV_COORDINATOR: "10.0.0.1:1234", ENV_NUM_PROCESSES: "4", ENV_PROCESS_ID: "2"}

# ------------------------------------------------------------------------ resolve_settings


def test_nothing_set_is_single_process():
    assert resolve_settings(None, {}) is None
    assert resolve_settings({}, {"UNRELATED": "1"}) is None
    assert resolve_settings({"auto": False, "coordinator_address": None}, {}) is None


def test_env_vars_give_explicit_settings_without_cluster_detection():
    s = resolve_settings(None, ENV3)
    assert s == InitSettings(
        auto=False, coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2
    )
    # Explicit values must not be overridden by JAX's SLURM detection (one GPU per process).
    assert s.initialize_kwargs() == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 2,
        "cluster_detection_method": "deactivate",
    }


def test_config_wins_per_field_and_env_fills_the_rest():
    cfg = {"coordinator_address": "head:999", "num_processes": 4}
    s = resolve_settings(cfg, {**ENV3, ENV_LOCAL_DEVICE_IDS: "0, 1"})
    assert (s.coordinator_address, s.num_processes, s.process_id) == ("head:999", 4, 2)
    assert s.local_device_ids == (0, 1)
    assert s.initialize_kwargs()["local_device_ids"] == [0, 1]


def test_config_dict_section_is_accepted():
    cfg = ml_collections.ConfigDict(
        {
            "auto": False,
            "coordinator_address": "h:1",
            "num_processes": 2,
            "process_id": 1,
            "local_device_ids": [3],
            "initialization_timeout": 60,
        }
    )
    s = resolve_settings(cfg, {})
    assert s.initialize_kwargs() == {
        "coordinator_address": "h:1",
        "num_processes": 2,
        "process_id": 1,
        "local_device_ids": [3],
        "initialization_timeout": 60,
        "cluster_detection_method": "deactivate",
    }


@pytest.mark.parametrize(
    "cfg, env",
    [({"auto": True}, {}), (None, {ENV_MODE: "auto"}), (None, {ENV_MODE: " AUTO "})],
)
def test_auto_leaves_everything_to_jax_detection(cfg, env):
    s = resolve_settings(cfg, env)
    assert s is not None and s.auto
    assert s.initialize_kwargs() == {}


def test_auto_keeps_explicit_fields_and_detects_the_rest():
    s = resolve_settings({"auto": True}, {ENV_PROCESS_ID: "3"})
    assert s.initialize_kwargs() == {"process_id": 3}


def test_one_process_is_a_no_op():
    assert resolve_settings(None, {**ENV3, ENV_NUM_PROCESSES: "1", ENV_PROCESS_ID: "0"}) is None


@pytest.mark.parametrize(
    "cfg, env, message",
    [
        (None, {ENV_COORDINATOR: "h:1"}, ENV_NUM_PROCESSES),
        (None, {ENV_COORDINATOR: "h:1", ENV_NUM_PROCESSES: "2"}, ENV_PROCESS_ID),
        (None, {ENV_LOCAL_DEVICE_IDS: "0"}, ENV_COORDINATOR),
        (None, {**ENV3, ENV_PROCESS_ID: "4"}, "not in [0, 4)"),
        (None, {**ENV3, ENV_PROCESS_ID: "two"}, "must be an integer"),
        (None, {**ENV3, ENV_COORDINATOR: "10.0.0.1"}, "host:port"),
        (None, {**ENV3, ENV_LOCAL_DEVICE_IDS: "0;1"}, "device ids"),
        (None, {ENV_MODE: "yes"}, "'auto' or unset"),
        ({"coordinator_adress": "h:1"}, {}, "unknown distributed config keys"),
        ({"num_processes": True, "coordinator_address": "h:1", "process_id": 0}, {}, "integer"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(cfg, env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_settings(cfg, env)


# ------------------------------------------------------------------------ maybe_initialize


@pytest.fixture
def fake_runtime(monkeypatch):
    """Record `jax.distributed.initialize` calls instead of starting a runtime."""
    calls: list[dict[str, Any]] = []
    state = {"up": False}

    def initialize(**kwargs):
        calls.append(kwargs)
        state["up"] = True

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: state["up"])
    for key in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID, ENV_LOCAL_DEVICE_IDS, ENV_MODE):
        monkeypatch.delenv(key, raising=False)
    return calls


def test_maybe_initialize_without_settings_does_not_start_a_runtime(fake_runtime):
    info = maybe_initialize(None)
    assert fake_runtime == []
    assert not info.initialized and info.is_primary
    assert (info.process_index, info.process_count) == (0, 1)
    assert info.device_count == jax.device_count()
    assert info.local_device_count == jax.local_device_count()
    assert dist.is_primary()


def test_maybe_initialize_starts_once_from_env(fake_runtime, monkeypatch):
    for k, v in ENV3.items():
        monkeypatch.setenv(k, v)
    first = maybe_initialize()
    second = maybe_initialize({"coordinator_address": "elsewhere:1"})
    assert fake_runtime == [
        {
            "coordinator_address": "10.0.0.1:1234",
            "num_processes": 4,
            "process_id": 2,
            "cluster_detection_method": "deactivate",
        }
    ]
    assert first.initialized and first == second


def test_failed_auto_detection_says_what_to_set(fake_runtime, monkeypatch):
    def no_cluster(**kwargs):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", no_cluster)
    with pytest.raises(ValueError, match=f"auto-detection.*{ENV_COORDINATOR}"):
        maybe_initialize({"auto": True})


# ------------------------------------------------------------------------ 2 real processes

WORKER = r"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from persona_jax.parallel import batch_sharding
from persona_jax.parallel.distributed import is_primary, maybe_initialize
from persona_jax.parallel.mesh import make_mesh

info = maybe_initialize()
again = maybe_initialize()
mesh = make_mesh({"data": 2, "fsdp": 4}, jax.devices())
x = np.arange(8 * 16, dtype=np.float32).reshape(8, 16) / 7.0
rows = NamedSharding(mesh, P(("data", "fsdp")))
arr = jax.make_array_from_callback(x.shape, rows, lambda idx: x[idx])
total = jax.jit(lambda a: jnp.sum(a * a), out_shardings=NamedSharding(mesh, P()))(arr)
psum = jax.jit(
    jax.shard_map(
        lambda b: jax.lax.psum(jnp.sum(b), ("data", "fsdp")),
        mesh=mesh, in_specs=P(("data", "fsdp")), out_specs=P(),
    )
)(arr)
# The input-pipeline recipe: each process holds its own rows, assembled into one global batch.
half = x.shape[0] // jax.process_count()
local = x[jax.process_index() * half : (jax.process_index() + 1) * half]
batch = jax.make_array_from_process_local_data(batch_sharding(mesh), local)
from_local = jax.jit(lambda a: jnp.sum(a * a), out_shardings=NamedSharding(mesh, P()))(batch)
local_rows = sorted(int(s.index[0].start) for s in arr.addressable_shards)
gathered = multihost_utils.process_allgather(np.asarray([jax.process_index()]))
result = {
    "process_index": info.process_index,
    "process_count": info.process_count,
    "device_count": info.device_count,
    "local_device_count": info.local_device_count,
    "initialized": info.initialized,
    "idempotent": again == info,
    "primary": is_primary(),
    "total": float(total),
    "psum": float(psum),
    "from_local": float(from_local),
    "global_shape": list(batch.shape),
    "local_rows": local_rows,
    "gathered": np.asarray(gathered).ravel().tolist(),
}
with open(sys.argv[1], "w") as f:
    json.dump(result, f)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(
    code: str,
    tmp_path: Path,
    num_processes: int = 2,
    devices_per_process: int = 4,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """Run `code` in `num_processes` connected CPU processes; the JSON each one wrote.

    `code` gets a result path as `sys.argv[1]` (stdout is no place for results: gloo's C++
    logging writes into it unsynchronised). Each process gets the PERSONA_JAX_* variables the
    launch scripts set and its own simulated CPU devices. All are killed if any fails or the
    deadline passes, so a hung collective cannot stall the suite.
    """
    port = _free_port()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PERSONA_JAX_", "JAX_", "XLA_")) and k != "CUDA_VISIBLE_DEVICES"
    }
    base.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
        PYTHONUNBUFFERED="1",
        **{ENV_COORDINATOR: f"127.0.0.1:{port}", ENV_NUM_PROCESSES: str(num_processes)},
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"result-{i}.json")],
            env={**base, ENV_PROCESS_ID: str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]
    deadline = time.monotonic() + timeout
    outputs: list[tuple[str, str]] = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append((out, err))
            if p.returncode != 0:
                pytest.fail(f"worker exited with {p.returncode}\nstdout:\n{out}\nstderr:\n{err}")
    except subprocess.TimeoutExpired:
        pytest.fail(f"workers did not finish within {timeout:.0f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for i, (out, err) in enumerate(outputs):
        path = tmp_path / f"result-{i}.json"
        assert path.exists(), f"worker {i} wrote no result\nstdout:\n{out}\nstderr:\n{err}"
        results.append(json.loads(path.read_text()))
    return results


def test_two_processes_form_one_8_device_job(tmp_path):
    results = run_workers(WORKER, tmp_path)
    x = np.arange(8 * 16, dtype=np.float32).reshape(8, 16) / 7.0
    for i, r in enumerate(results):
        assert r["process_index"] == i and r["process_count"] == 2
        assert r["device_count"] == 8 and r["local_device_count"] == 4
        assert r["initialized"] and r["idempotent"]
        assert r["primary"] == (i == 0)
        np.testing.assert_allclose(r["total"], float(np.sum(x * x)), rtol=1e-5)
        np.testing.assert_allclose(r["psum"], float(np.sum(x)), rtol=1e-5)
        np.testing.assert_allclose(r["from_local"], float(np.sum(x * x)), rtol=1e-5)
        assert r["global_shape"] == [8, 16]
        assert r["gathered"] == [0, 1]
    # Each process holds a disjoint half of the batch rows (the `data` axis spans processes).
    assert results[0]["local_rows"] == [0, 1, 2, 3]
    assert results[1]["local_rows"] == [4, 5, 6, 7]
