"""Per-platform settings shared by the role configs: `--config=configs/patient.py:gpu`.

The CPU settings are sized so that `make run` (SmolLM2-135M, 2 cores) trains, evaluates
before and after, and finishes within 30 minutes: training stops after `train.max_minutes`,
or earlier when one more step and the after-evaluation would pass `train.deadline_minutes`
(a slower machine trains fewer steps). GPU and TPU settings scale batch, turns and lengths
and spread the batch over a mesh; use a larger policy with `--config.model.path=...`.
"""

from ml_collections import ConfigDict


def apply_platform(c: ConfigDict, platform: str) -> ConfigDict:
    platform = platform or "cpu"
    c.platform = platform
    if platform == "cpu":
        c.data.batch_size = 4
        c.rl.algorithm = "rloo"
        c.rl.group_size = 2
        c.rl.learning_rate = 3e-5
        c.rl.kl_coef = 0.5  # keeps the episode KL within rl.kl_budget over the short run
        c.episode.num_turns = 3
        c.episode.max_new_tokens = 32
        c.episode.partner_max_new_tokens = 32
        c.train.steps = 60
        c.train.max_minutes = 23.0
        c.train.deadline_minutes = 28.5  # a slower machine trains fewer steps, not longer
        c.train.save_every = 2
        c.train.rollback_over_kl_budget = True  # what a 30-minute run hands over
        c.reward.run_on_penalty = 0.25  # 32 tokens is a short cap for a therapy reply
        c.eval.num_personas = 10
        c.eval.num_turns = 3
        # Sampled at the training temperature, three dialogues per held-out persona: greedy
        # decoding of the 135M base loops on one phrase, which is not the policy RL trains.
        c.eval.temperature = 1.0
        c.eval.samples_per_persona = 3
    elif platform == "gpu":
        c.model.dtype = "bfloat16"
        c.data.batch_size = 64
        c.rl.algorithm = "ppo"
        c.rl.epochs = 2
        c.rl.minibatches = 4
        c.episode.num_turns = 8
        c.episode.max_new_tokens = 64
        c.episode.partner_max_new_tokens = 64
        c.train.steps = 500
        c.train.eval_every = 50
        c.train.save_every = 25
        c.eval.num_turns = 8
        c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    elif platform == "tpu":
        c.model.dtype = "bfloat16"
        c.data.batch_size = 32  # per host
        c.rl.algorithm = "ppo"
        c.rl.epochs = 2
        c.rl.minibatches = 4
        c.episode.num_turns = 8
        c.episode.max_new_tokens = 64
        c.episode.partner_max_new_tokens = 64
        c.train.steps = 1000
        c.train.eval_every = 100
        c.train.save_every = 50
        c.eval.num_turns = 8
        c.mesh.update(dict(data=-1, fsdp=4, tensor=1))
        c.distributed.auto = True
    else:
        raise ValueError(f"unknown platform {platform!r}; use cpu, gpu or tpu")
    return c
