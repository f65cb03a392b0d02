"""Distil the 70B consistency judge into the judges the RL step runs on device.

    python distill_judge.py --config=configs/judge.py                  # the shipped judges
    python distill_judge.py --config=configs/judge.py --mode=pack      # labelled lines -> ids
    python distill_judge.py --config=configs/judge.py --mode=finetune  # adapters, from the pack
    python distill_judge.py --config=configs/judge.py --mode=extract   # head-only judges:
    python distill_judge.py --config=configs/judge.py --mode=train     #   features, then heads

The default, `adapters`, is `pack` (skipped when `finetune.pack` exists) then `finetune`: it
rebuilds the shipped adapter judges (minutes on a GPU, hours on a laptop CPU). `pack` writes
every judged line as token ids and labels into one file; `finetune` trains low-rank adapters
of the backbone with the head from that file alone (no release data or TFDS needed where it
runs), selects on validation, scores test once and writes the judges. `extract` caches the
frozen base's pooled features of every judged line (resumable) and `train` fits head-only
judges on them (the earlier design, docs/judges_head_only.md). The logic lives in
`persona_jax.judges`.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/judge.py", "judge config file")
_MODE = flags.DEFINE_enum(
    "mode", "adapters", ["adapters", "pack", "finetune", "extract", "train"], "what to run"
)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    c = _CONFIG.value
    mode = _MODE.value
    if mode in ("adapters", "pack", "finetune"):  # no TFDS import: the finetune box may lack it
        from persona_jax.judges import distill_lora

        if mode == "pack" or (mode == "adapters" and not Path(c.finetune.pack).is_file()):
            distill_lora.run_pack(c)
        if mode != "pack":
            distill_lora.run_finetune(c)
        return
    from persona_jax.judges import distill

    (distill.run_extract if mode == "extract" else distill.run_train)(c)


if __name__ == "__main__":
    app.run(main)
