"""Consistency evaluation: `python evaluate.py --config=configs/eval.py [--config.x=y]`.

Two sources of dialogues:

- generated (default): `num_dialogues` greedy dialogues of `num_turns` policy turns on the
  persona bank's held-out `role` personas, played by `policy` ("" = the base model; an HF
  directory, a .gguf file, or a train.py workdir / checkpoints directory) against the frozen
  base as partner; written to `output_dir/dialogues.json` in the released format;
- files: `dialogues_dir` names released-format files (the paper's data, or a dialogues.json
  written here); `max_dialogues` caps how many are read (0 = all).

Scored by `judge` = "distilled" (the on-device judge, `distilled.*`) or "llm" (`llm.*`: a
local model run greedily by our sampler, or an OpenAI-compatible server via `llm.base_url` and
`llm.model`, the key read from the environment variable `llm.api_key_env`, never written).
`run` holds the train-config defaults that generation uses (episode lengths and widths); the
top-level keys above override what they name.
"""

from ml_collections import ConfigDict

from configs.base import get_base_config


def add_judges(c: ConfigDict) -> None:
    """The judge settings shared by the evaluation and the judge-agreement configs."""
    c.judge = "distilled"  # distilled | llm
    c.base_model = ""  # the distilled judge's base ("" = default SmolLM2 asset)
    c.tiny = False  # tiny random base and policy with the asset's tokenizer (tests only)
    c.distilled = ConfigDict(
        dict(
            path="persona_jax/judges/shipped",
            random=False,  # a random head (smoke tests only)
            threshold=-1.0,  # < 0: the judge's own thresholds (chosen on validation), else 0.5
            batch_size=32,
        )
    )
    c.llm = ConfigDict(
        dict(
            model_path="",  # local judge model: "" = default asset, HF dir, .gguf, train.py run
            base_url="",  # set to use an OpenAI-compatible server instead of a local model
            model="",  # the served model's name (with base_url)
            api_key_env="OPENAI_API_KEY",  # the variable holding the key (its value is never saved)
            batch_size=8,  # local judge: prompts per sampler call
            max_batch_tokens=16384,  # local judge: rows x longest prompt per sampler call
            max_new_tokens=160,
            history_lines=8,  # prompt-to-line: conversation lines shown before the judged line
            max_earlier_lines=8,  # line-to-line: the speaker's last earlier lines shown (0: all)
            max_concurrency=8,  # server judge: requests in flight
            timeout_s=120.0,
        )
    )
    c.chunk_size = 64  # lines per judge call (progress bar granularity)
    c.progress = True


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.kind = "metrics"
    c.seed = 0
    c.output_dir = "runs/eval"

    c.policy = ""
    c.role = "patient"  # patient | student | chat
    c.num_dialogues = 10
    c.num_turns = 4
    c.temperature = 0.0  # 0 = greedy dialogues

    c.dialogues_dir = ""
    c.max_dialogues = 0

    add_judges(c)
    c.report = ConfigDict(dict(ci="bootstrap", level=0.95, bootstrap_samples=2000))
    c.run = get_base_config()
    return c
