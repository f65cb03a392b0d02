"""Checkpointer: round trip, keep-N, latest-intact after an interrupted write, shape errors."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from persona_jax.checkpoint import Checkpointer, CheckpointError


def _state(scale: float = 1.0, d: int = 4):
    return {
        "params": {"w": jnp.arange(d * 3, dtype=jnp.float32).reshape(d, 3) * scale},
        "step": jnp.asarray(7, jnp.int32),
        "rng": jax.random.key_data(jax.random.key(3)),
    }


def test_round_trip_with_data_state_and_keep_n(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", max_to_keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, _state(step), data={"next_index": step * 10}, meta={"run": "t"})
    ckpt.wait()
    assert ckpt.all_steps() == [2, 3]
    out = ckpt.restore(_state())
    assert out.step == 3 and out.data == {"next_index": 30} and out.meta["run"] == "t"
    np.testing.assert_array_equal(out.state["params"]["w"], _state(3)["params"]["w"])
    np.testing.assert_array_equal(out.state["rng"], _state()["rng"])
    ckpt.close()


def test_interrupted_write_falls_back_to_previous(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", max_to_keep=3)
    ckpt.save(1, _state(1.0))
    ckpt.wait()
    ckpt.close()
    # What a process killed mid-write leaves behind: a step directory that was never finalised.
    shutil.copytree(tmp_path / "ck" / "1", tmp_path / "ck" / "2.orbax-checkpoint-tmp-123")
    fresh = Checkpointer(tmp_path / "ck")
    assert fresh.latest_step == 1
    out = fresh.restore(_state())
    np.testing.assert_array_equal(out.state["params"]["w"], _state(1.0)["params"]["w"])


def test_different_model_shape_is_refused(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(1, _state(d=4))
    ckpt.wait()
    with pytest.raises(CheckpointError, match=r"shape \(4, 3\).*expects \(5, 3\)"):
        ckpt.restore(_state(d=5))
    with pytest.raises(CheckpointError, match="different structure"):
        ckpt.restore({**_state(), "extra": jnp.zeros(2)})
    assert Checkpointer(tmp_path / "empty").restore(_state()) is None
