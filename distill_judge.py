"""Distil the 70B consistency judge into a head over the frozen base's lower layers.

    python distill_judge.py --config=configs/judge.py --mode=extract
    python distill_judge.py --config=configs/judge.py --mode=train

`extract` caches the frozen base's pooled features of every judged line (resumable);
`train` trains the heads on the cache, picks depth and threshold on validation, reports test
once, and writes the shipped judges. The logic lives in `persona_jax.judges`.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from persona_jax.judges import distill

_CONFIG = config_flags.DEFINE_config_file("config", "configs/judge.py", "judge config file")
_MODE = flags.DEFINE_enum("mode", "train", ["extract", "train"], "what to run")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    c = _CONFIG.value
    if _MODE.value == "extract":
        distill.run_extract(c)
    else:
        distill.run_train(c)


if __name__ == "__main__":
    app.run(main)
