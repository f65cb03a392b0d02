"""Train a persona simulator with multi-turn RL.

    python train.py --config=configs/patient.py [--config.train.steps=50 ...]

Prints the resolved config, saves it with the run, trains with checkpoints (a rerun with the
same workdir resumes), evaluates before and after on held-out personas, and ends with one
line of JSON holding the before/after metrics.
"""

import json
from pathlib import Path

from absl import app, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/patient.py", "Run config file.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax

    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO

    from persona_jax.parallel.distributed import maybe_initialize
    from persona_jax.train.trainer import train

    config = _CONFIG.value
    maybe_initialize(config.distributed)  # before anything touches a device
    workdir = Path(config.workdir)
    if jax.process_index() == 0:
        print(config)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    result = train(config)
    if jax.process_index() == 0:
        print(before_after_table(result))
        if result.get("change"):
            from persona_jax.train.changes import change_table

            print("\nbefore -> after, with persona-bootstrap intervals:")
            print(change_table(result["change"]))
        print(json.dumps(result))


def before_after_table(result: dict) -> str:
    """The three metrics (and the degeneration guards) before and after training."""
    before, after = result.get("before") or {}, result.get("after") or {}
    keys = [
        "prompt_to_line",
        "p_inconsistent",
        "line_to_line",
        "qa",
        "mean_length",
        "distinct_2",
        "persona_copy",
        "reward_judge_prompt_to_line",
        "reward_judge_p_inconsistent",
        "swap_prompt_to_line",
        "swap_p_inconsistent",
        "reward_judge_swap_prompt_to_line",
        "reward_judge_swap_p_inconsistent",
    ]
    rows = ["| metric | before | after |", "| --- | --- | --- |"]
    fmt = lambda d, k: f"{d[k]:.3f}" if k in d else "-"
    rows += [f"| {k} | {fmt(before, k)} | {fmt(after, k)} |" for k in keys]
    return "\n".join(rows)


if __name__ == "__main__":
    app.run(main)
