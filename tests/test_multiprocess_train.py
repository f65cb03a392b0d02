"""configs/tiny.py trained by 2 connected processes x 4 CPU devices equals 1 process x 8."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_distributed import run_workers

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    from persona_jax.parallel.distributed import maybe_initialize
    info = maybe_initialize()
    import jax
    from configs import tiny
    from persona_jax.train.trainer import Trainer

    c = tiny.get_config()
    c.workdir = {workdir!r}
    c.eval.before_after = False
    c.data.batch_size = {batch}  # per process
    c.episode.temperature = 0.0  # greedy: each episode is independent of its row
    c.episode.partner_temperature = 0.0
    c.mesh.update(dict(data=1, fsdp=4, tensor=2))
    trainer = Trainer(c)
    losses, rewards = [], []
    for step in range(3):
        logs = trainer.train_step(step)
        losses.append(logs["policy_loss"])
        rewards.append(logs["reward/total"])
    trainer.save(3, force=True)
    trainer.ckpt.close()
    out = dict(process=jax.process_index(), count=jax.process_count(),
               devices=len(jax.devices()), losses=losses, rewards=rewards)
    open(sys.argv[1], "w").write(json.dumps(out))
    """
)


@pytest.mark.slow
def test_two_processes_match_one_process_with_eight_devices(tmp_path):
    multi = run_workers(
        WORKER.format(root=str(ROOT), workdir=str(tmp_path / "mp"), batch=2),
        tmp_path,
        num_processes=2,
        devices_per_process=4,
        timeout=900,
    )
    assert [r["count"] for r in multi] == [2, 2] and all(r["devices"] == 8 for r in multi)
    assert multi[0]["losses"] == multi[1]["losses"]
    assert (tmp_path / "mp" / "checkpoints" / "3").is_dir()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    code = WORKER.format(root=str(ROOT), workdir=str(tmp_path / "sp"), batch=4)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "single.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((tmp_path / "single.json").read_text())
    assert single["count"] == 1 and single["devices"] == 8
    for a, b in zip(multi[0]["losses"], single["losses"], strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    for a, b in zip(multi[0]["rewards"], single["rewards"], strict=True):
        assert a == pytest.approx(b, abs=1e-5)
