"""Asynchronous, atomic, keep-N checkpoints of a training run.

A checkpoint holds three items:
  - `state`: the train-state pytree (params, optimizer state, RNG key, step, controllers);
  - `data`: the grain iterator state (a small JSON dict), so a resumed run reads the very
    batches an uninterrupted run would have read;
  - `meta`: the resolved run config and the model config, used to refuse a checkpoint written
    for a different model shape with an error that says which parameter differs.
Orbax writes each step into a temporary directory and renames it when complete, so a process
killed mid-write leaves the previous checkpoint as the latest intact one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into the requested state (names dir and step)."""


@dataclasses.dataclass
class Restored:
    step: int
    state: Any
    data: dict[str, Any] | None
    meta: dict[str, Any]


def _shape_tree(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path): (tuple(np.shape(x)), str(np.dtype(x.dtype))) for path, x in flat
    }


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` with the three items above."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
    ) -> None:
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data", "meta")
        )

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        *,
        data: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Start saving `step` (returns at once when async); True if a save was started."""
        meta = dict(meta or {})
        meta["shapes"] = {k: [list(s), d] for k, (s, d) in _shape_tree(state).items()}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data or {}),
            meta=ocp.args.JsonSave(meta),
        )
        return self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> Restored | None:
        """Restore `step` (default: latest) into the structure of `abstract_state`.

        `abstract_state` may hold concrete arrays or `jax.ShapeDtypeStruct`s (with shardings,
        to restore straight onto a mesh). Returns None when there is no checkpoint.
        """
        step = self.latest_step if step is None else step
        if step is None:
            return None
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        self._check_shapes(abstract_state, meta, step)
        target = jax.tree.map(
            lambda x: (
                x
                if isinstance(x, jax.ShapeDtypeStruct)
                else jax.ShapeDtypeStruct(
                    np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)
                )
            ),
            abstract_state,
        )
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
        )
        return Restored(step=step, state=out["state"], data=out["data"] or None, meta=meta)

    def restore_raw(self, step: int | None = None) -> Restored | None:
        """Restore `step` (default: latest) as saved, without a target structure.

        For tools that read a checkpoint without building a train state (export, inspection);
        arrays come back on the default device.
        """
        step = self.latest_step if step is None else step
        if step is None:
            return None
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return Restored(step=step, state=out["state"], data=out["data"] or None, meta=out["meta"])

    def _check_shapes(self, abstract_state: Any, meta: dict[str, Any], step: int) -> None:
        stored = {k: (tuple(s), d) for k, (s, d) in meta.get("shapes", {}).items()}
        wanted = _shape_tree(abstract_state)
        where = f"checkpoint {self.directory} step {step}"
        missing = sorted(set(wanted) - set(stored))
        extra = sorted(set(stored) - set(wanted))
        if missing or extra:
            raise CheckpointError(
                f"{where} has a different structure: missing {missing[:5]}, unexpected {extra[:5]}"
                " (written for another model or algorithm?)"
            )
        for key, (shape, dtype) in wanted.items():
            if stored[key][0] != shape:
                raise CheckpointError(
                    f"{where}: {key} has shape {stored[key][0]} but the model expects {shape} "
                    "(a checkpoint from a different model shape)"
                )
            if stored[key][1] != dtype:
                raise CheckpointError(
                    f"{where}: {key} has dtype {stored[key][1]}, expected {dtype}"
                )

    def wait(self) -> None:
        """Block until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
