"""Evaluate persona consistency, or a judge's agreement with the release's verdicts.

    python evaluate.py --config=configs/eval.py [--config.policy=RUN_OR_MODEL ...]
    python evaluate.py --config=configs/judge_agreement.py --config.judge=distilled|llm

Writes config.json, results.json, results.md (and plots, dialogues or verdicts) into
`output_dir` and ends with one line of JSON. See `persona_jax.evaluation.run`.
"""

import json

from absl import app, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/eval.py", "Evaluation config file.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from persona_jax.evaluation.run import run

    print(json.dumps(run(_CONFIG.value)))


if __name__ == "__main__":
    app.run(main)
