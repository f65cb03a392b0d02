"""A tiny random model and judge for tests: seconds per step on one CPU core."""

from configs.base import get_base_config


def get_config():
    c = get_base_config()
    c.workdir = "runs/tiny"
    c.model.tiny = True
    c.judge.random = True
    c.judge.eval_path = ""
    c.data.batch_size = 2
    c.episode.num_turns = 2
    c.episode.max_new_tokens = 8
    c.episode.partner_max_new_tokens = 8
    c.reward.max_history_lines = 2
    c.rl.learning_rate = 1e-3
    c.train.steps = 4
    c.train.save_every = 2
    c.eval.num_personas = 2
    c.eval.num_turns = 2
    return c
