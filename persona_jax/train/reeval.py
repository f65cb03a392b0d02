"""Replay a run's held-out evaluations from its checkpoint, for per-line scores and intervals.

    python -m persona_jax.train.reeval --workdir=runs/patient [--step=N]
        [--reward_judge=DIR] [--force]

Rebuilds the run from the config stored in its checkpoint, plays the before-evaluation with
the base policy and the after-evaluation with the policy of step N (default: the latest),
exactly as the trainer does (same seed, personas and judges), writes their per-line scores to
``evals/`` and prints the before -> after changes with persona-bootstrap intervals
(`persona_jax.train.changes`). Saved evaluations are reused unless ``--force``. For runs made
before per-line scores were saved; ``--reward_judge`` replays with the reward judge a run was
trained with when the shipped one has changed since. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
from ml_collections import ConfigDict

from persona_jax.checkpoint import Checkpointer
from persona_jax.evaluation.sources import checkpoint_dir
from persona_jax.train.changes import (
    change_table,
    changes_between,
    eval_lines_path,
    save_eval_lines,
)


def _evaluate_to(path: Path, run, params, seed: int, force: bool, what: str) -> dict | None:
    from persona_jax.train.evaluation import evaluate

    if path.is_file() and not force:
        print(f"{what}: reusing {path}")
        return None
    t0 = time.perf_counter()
    result = evaluate(run, params, seed=seed)
    save_eval_lines(path, result.per_line, result.persona_ids)
    print(f"{what}: evaluated in {time.perf_counter() - t0:.0f} s -> {path}")
    return result.metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persona_jax.train.reeval")
    parser.add_argument("--workdir", required=True, help="a train.py workdir")
    parser.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    parser.add_argument("--reward_judge", default=None, help="replace the config's judge.path")
    parser.add_argument("--force", action="store_true", help="evaluate again over saved files")
    args = parser.parse_args(argv)

    from persona_jax.train.setup import build_run

    workdir = Path(args.workdir)
    ckpt = checkpoint_dir(workdir) if workdir.is_dir() else None
    if ckpt is None:
        parser.error(f"--workdir {workdir}: no train.py checkpoints there")
    restored = Checkpointer(ckpt).restore_raw(args.step)
    if restored is None or "config" not in restored.meta:
        parser.error(f"{ckpt}: step {args.step} is not a train.py checkpoint")
    config = ConfigDict(restored.meta["config"])
    if args.reward_judge is not None:
        if not (Path(args.reward_judge) / "judge_config.json").is_file():
            parser.error(f"--reward_judge {args.reward_judge}: no judge_config.json there")
        config.judge.path = args.reward_judge
    run = build_run(config)
    policy = jax.tree.map(np.asarray, restored.state["params"]["policy"])
    before_path = eval_lines_path(workdir, "before", 0)
    after_path = eval_lines_path(workdir, "after", restored.step)
    seed, force = config.seed, args.force
    metrics = {
        "before": _evaluate_to(before_path, run, run.base_params, seed, force, "before"),
        "after": _evaluate_to(after_path, run, policy, seed, force, "after"),
    }
    for what, m in metrics.items():
        if m is not None:
            print(f"{what}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    found = changes_between(before_path, after_path, seed=seed)
    changes = {k: c.to_dict() for k, c in found.items()}
    print(change_table(changes))
    print(
        json.dumps(
            {
                "workdir": str(workdir),
                "step": restored.step,
                "reward_judge": config.judge.path,
                **metrics,
                "change": changes,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
