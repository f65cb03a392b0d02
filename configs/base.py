"""Defaults shared by every training config. Each role config overrides what differs.

GPU/TPU settings live beside the CPU ones in `configs/platforms.py`; pick them with the
config-file argument: `--config=configs/patient.py:gpu` (or `:tpu`).
"""

from ml_collections import ConfigDict


def get_base_config() -> ConfigDict:
    c = ConfigDict()
    c.seed = 0
    c.workdir = "runs/default"
    c.platform = "cpu"  # set by the config-file argument (configs/patient.py:gpu); informational

    c.model = ConfigDict()
    c.model.path = (
        ""  # "" = the default SmolLM2-135M-Instruct asset (python -m persona_jax.assets fetch)
    )
    c.model.dtype = "float32"
    c.model.tiny = False  # a tiny random model with the asset's tokenizer (tests)

    c.partner = ConfigDict()
    c.partner.path = ""  # "" = the frozen reference (the same base checkpoint as the policy)

    c.judge = ConfigDict()
    c.judge.path = "persona_jax/judges/shipped"  # distilled judge used as the reward
    c.judge.random = False  # a randomly initialised head (smoke tests only)
    # Before/after evaluation uses a second judge (half of the reward judge's training personas,
    # its own seeds), so the reported consistency is not the reward being optimised; "" = the
    # reward judge.
    c.judge.eval_path = "persona_jax/judges/shipped_eval"

    c.data = ConfigDict()
    c.data.role = "patient"
    c.data.batch_size = 4  # personas per step (per process); episodes = batch_size x group_size

    c.episode = ConfigDict()
    c.episode.num_turns = 4
    c.episode.max_new_tokens = 40
    c.episode.partner_max_new_tokens = 40
    c.episode.temperature = 1.0
    c.episode.top_p = 1.0
    c.episode.top_k = 0
    c.episode.partner_temperature = 0.7
    # Token widths of the padded episode inputs; 0 = fit to the role's persona bank (the
    # longest prompt, opening, persona and probe, rounded up to 16). Every padded column costs
    # compute in every prefill and update, so fitted widths are the fast default.
    c.episode.widths = ConfigDict(
        dict(policy_prompt=0, partner_prompt=0, opening=0, persona=0, qa=0)
    )

    c.reward = ConfigDict()
    c.reward.max_history_lines = 4
    c.reward.w_prompt_to_line = 1.0
    c.reward.w_line_to_line = 0.5
    c.reward.w_qa = 0.5
    c.reward.empty_penalty = 1.0
    c.reward.run_on_penalty = 0.5
    c.reward.partner_penalty = 1.0
    c.reward.copy_penalty = 0.0
    c.reward.copy_ngram = 4
    # P(inconsistent | another persona in the batch) - P(inconsistent | own persona); one more
    # judge pass per step when non-zero.
    c.reward.w_persona_contrast = 0.0

    c.rl = ConfigDict()
    c.rl.algorithm = "ppo"
    c.rl.learning_rate = 1e-5
    c.rl.critic_learning_rate = 1e-4
    c.rl.weight_decay = 0.0
    c.rl.max_grad_norm = 1.0
    c.rl.gamma = 1.0
    c.rl.lam = 0.95
    c.rl.clip_eps = 0.2
    c.rl.value_clip_eps = 0.2
    c.rl.vf_coef = 0.5
    c.rl.ent_coef = 0.0
    c.rl.kl_coef = 0.05
    c.rl.kl_in_reward = True
    c.rl.kl_estimator = "k3"  # of the loss term (kl_in_reward=False): k2 or k3; see rl.losses
    c.rl.adaptive_kl = False
    c.rl.kl_target = 0.05
    c.rl.kl_horizon = 1000.0
    c.rl.kl_coef_min = 0.0  # bounds of the adaptive coefficient
    c.rl.kl_coef_max = 1e6
    c.rl.kl_budget = 5.0  # the result says whether the last steps' mean episode KL stays within it
    c.rl.whiten_advantages = True
    c.rl.recompute_old_logprobs = False  # True: a fresh forward instead of the sampler's
    c.rl.epochs = 1
    c.rl.minibatches = 1
    c.rl.group_size = 1
    c.rl.baseline = "moving"
    c.rl.baseline_decay = 0.9
    c.rl.critic = "shared"
    # Recompute decoder activations in the backward pass: far less memory, and on CPU also
    # faster (python -m persona_jax.bench update --remat): storing them is memory-bound.
    c.rl.remat = True

    c.train = ConfigDict()
    c.train.steps = 20
    c.train.eval_every = 0  # 0 = only before and after training
    c.train.save_every = 5
    c.train.keep_checkpoints = 3
    c.train.log_every = 1
    c.train.max_minutes = 0.0  # stop early (and checkpoint) after this wall time; 0 = off
    # Wall-time budget of the whole job, evaluations included (0 = off): training stops when one
    # more step (with its in-training evaluation, if one is due) plus an after-evaluation would
    # pass it; an evaluation is assumed to take as long as the latest one did.
    c.train.deadline_minutes = 0.0
    # A run that ends over rl.kl_budget hands over (evaluates after, and saves to
    # workdir/within_budget for export_hf.py) its latest policy within the budget instead of the
    # last one; costs two device copies of the policy's parameters (persona_jax.train.kl_budget).
    c.train.rollback_over_kl_budget = False

    c.eval = ConfigDict()
    c.eval.before_after = True  # evaluate on held-out personas before and after training
    c.eval.num_personas = 10  # held-out personas (eval split) per evaluation
    # Index of the first of them in the role's eval split (id order): a run can be judged on
    # held-out personas that earlier runs' results did not choose its settings on.
    c.eval.first_persona = 0
    c.eval.num_turns = 4
    c.eval.temperature = 0.0  # greedy evaluation dialogues
    c.eval.samples_per_persona = 1  # dialogues per persona (use > 1 with temperature > 0)
    c.eval.samples_to_write = 3

    c.mesh = ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    # Multi-process runs (GPU clusters, TPU pods): empty fields fall back to the
    # PERSONA_JAX_* environment variables; nothing set = single process. See docs/scaling.md.
    c.distributed = ConfigDict(
        dict(
            auto=False, coordinator_address="", num_processes="", process_id="", local_device_ids=""
        )
    )
    return c
