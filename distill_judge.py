"""Distil the 70B consistency judge into a head over the frozen base's lower layers.

    python distill_judge.py --config=configs/judge.py --mode=extract
    python distill_judge.py --config=configs/judge.py --mode=train
    python distill_judge.py --config=configs/judge.py --mode=pack
    python distill_judge.py --config=configs/judge.py --mode=finetune   # a GPU job

`extract` caches the frozen base's pooled features of every judged line (resumable);
`train` trains the heads on the cache, picks depth and threshold on validation, reports test
once, and writes the shipped judges. `pack` writes every judged line as token ids and labels
into one file; `finetune` trains low-rank adapters of the backbone with the head from that
file alone (no release data or TFDS needed where it runs), selects on validation, scores test
once and writes the judges. The logic lives in `persona_jax.judges`.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/judge.py", "judge config file")
_MODE = flags.DEFINE_enum("mode", "train", ["extract", "train", "pack", "finetune"], "what to run")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    c = _CONFIG.value
    if _MODE.value in ("pack", "finetune"):  # no TFDS import: the finetune box may lack it
        from persona_jax.judges import distill_lora

        (distill_lora.run_pack if _MODE.value == "pack" else distill_lora.run_finetune)(c)
        return
    from persona_jax.judges import distill

    if _MODE.value == "extract":
        distill.run_extract(c)
    else:
        distill.run_train(c)


if __name__ == "__main__":
    app.run(main)
