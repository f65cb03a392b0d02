"""The train loop: episodes -> rewards -> update, with checkpoints, logs and evaluation.

Each step: the episode pipeline yields a batch of personas; `build_inputs` tokenises it; the
jitted rollout plays whole conversations; the jitted reward function scores every policy
utterance with the distilled judge; the jitted, sharded update applies PPO or a REINFORCE
variant. Checkpoints hold the train state and the data iterator state, so a killed run
resumes with the same next batches, RNG and optimizer state.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict
from tqdm import tqdm

from persona_jax.checkpoint import Checkpointer
from persona_jax.data.pipelines import episode_pipeline
from persona_jax.envs.episode import rollout
from persona_jax.envs.inputs import InputStats, build_inputs
from persona_jax.parallel import make_mesh
from persona_jax.parallel.host import global_batch, to_host
from persona_jax.rewards.consistency import episode_rewards, place_on_tokens
from persona_jax.rl import step as st
from persona_jax.rl.state import init_train_state
from persona_jax.rl.update import Batch
from persona_jax.train.changes import changes_between, eval_lines_path, save_eval_lines
from persona_jax.train.curves import plot_run
from persona_jax.train.evaluation import evaluate
from persona_jax.train.kl_budget import KLHistory
from persona_jax.train.logging import MetricWriter
from persona_jax.train.setup import Run, build_run, describe


def _episode_out_shardings(mesh, out_shape):
    """Batch-split outputs: [T, B, ...] fields on axis 1, [B, ...] on axis 0."""
    axes = tuple(a for a in ("data", "fsdp") if mesh.shape[a] > 1) or None

    def spec(path, x):
        if x.ndim == 0:
            return NamedSharding(mesh, PartitionSpec())
        top = getattr(path[0], "name", getattr(path[0], "key", ""))
        turn_major = top in ("policy", "partner", "qa_prob", "qa_correct")
        dims = [None] * x.ndim
        dims[1 if turn_major else 0] = axes
        return NamedSharding(mesh, PartitionSpec(*dims))

    return jax.tree_util.tree_map_with_path(spec, out_shape)


def past_deadline(
    elapsed_s: float, next_step_s: float, reserve_s: float, deadline_minutes: float
) -> bool:
    """Whether one more step and then the reserved work (the after-evaluation) would end the job
    past ``deadline_minutes`` of wall time; 0 means no deadline.

    The whole job is budgeted, not only training: on a slower machine the evaluations take
    longer too, and a fixed training budget alone would push the job past its limit.
    """
    if not deadline_minutes:
        return False
    return elapsed_s + next_step_s + reserve_s > 60.0 * deadline_minutes


def evaluates_after(done: int, eval_every: int, steps: int) -> bool:
    """Whether the trainer runs an in-training evaluation after step ``done`` (the last step
    gets the after-evaluation instead)."""
    return bool(eval_every) and done % eval_every == 0 and done < steps


class Trainer:
    def __init__(self, config: ConfigDict) -> None:
        self.t_created = time.perf_counter()  # the job's clock for train.deadline_minutes
        self.config = config
        self.workdir = Path(config.workdir)
        self.run: Run = build_run(config)
        c, run = config, self.run
        self.mesh = make_mesh(c.mesh.to_dict())
        state, self.tx = init_train_state(run.rl, run.model_cfg, run.base_params, c.seed)
        self.state = st.shard_state(state, self.tx, run.model_cfg, self.mesh)
        self.ref = st.shard_params(run.model_cfg, run.base_params, self.mesh)
        self.partner = (
            self.ref
            if run.partner_params is run.base_params
            else st.shard_params(run.partner_cfg, run.partner_params, self.mesh)
        )
        self.personas = {p.id: p for p in run.train_personas + run.eval_personas}
        self.data = iter(
            episode_pipeline(
                run.train_personas, run.partners, batch_size=c.data.batch_size, seed=c.seed
            )
        )
        self.ckpt = Checkpointer(self.workdir / "checkpoints", max_to_keep=c.train.keep_checkpoints)
        self.writer = MetricWriter(self.workdir)
        self.input_stats = InputStats()
        self._rollout = None
        self._update = None
        self.kl = KLHistory(c.rl.kl_budget)
        self.rollback = bool(c.train.rollback_over_kl_budget)
        # (policy step, a copy of its parameters): the latest admissible policy, kept on
        # device only when the run may hand it over instead of the last one.
        self._within: tuple[int, Any] | None = None
        self._copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))

    # ------------------------------------------------------------------ jitted pieces
    def _inputs(self, batch) -> Any:
        run = self.run
        inputs = build_inputs(
            batch,
            self.personas,
            run.tokenizer,
            run.chat,
            num_turns=run.train_spec.num_turns,
            widths=run.widths,
            pad_id=run.tokenizer.pad_id,
            repeat=run.rl.group_size,
            stats=self.input_stats,
        )
        return global_batch(inputs, self.mesh)

    def _rollout_fn(self, inputs):
        if self._rollout is None:
            run = self.run

            def fn(policy, partner, inputs, key):
                return rollout(
                    run.model_cfg, policy, run.partner_cfg, partner, inputs, key, run.train_spec
                )

            args = (self.state.params["policy"], self.partner, inputs, jax.random.key(0))
            out_shape = jax.eval_shape(fn, *args)
            in_sh = (
                st.state_shardings(self.state.params["policy"]),
                st.state_shardings(self.partner),
                jax.tree.map(lambda x: x.sharding, inputs),
                NamedSharding(self.mesh, PartitionSpec()),
            )
            self._rollout = jax.jit(
                fn, in_shardings=in_sh, out_shardings=_episode_out_shardings(self.mesh, out_shape)
            )
        return self._rollout

    def _reward(self, inputs, out):
        j = self.run.judge
        comps = jax.jit(episode_rewards, static_argnums=(0, 1, 2))(
            self.run.reward_spec, j.backbone_cfg, j.cfg.pools, j.backbone, j.head, inputs, out
        )
        tokens = jax.jit(place_on_tokens)(out, comps["total"])
        return comps, tokens

    def _update_fn(self, batch: Batch):
        if self._update is None:
            spec = self.run.train_spec
            self._update = st.make_update_fn(
                self.run.model_cfg,
                self.run.rl,
                self.tx,
                self.mesh,
                self.state,
                self.ref,
                batch,
                max_actions=spec.num_turns * spec.policy_sampling.max_new_tokens,
            )
        return self._update

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict[str, Any]:
        return {
            "config": json.loads(self.config.to_json()),
            **describe(self.run),
            "kl_history": self.kl.to_json(),
        }

    def save(self, step: int, *, force: bool = False) -> None:
        self.ckpt.save(step, self.state, data=self.data.get_state(), meta=self._meta(), force=force)

    def maybe_resume(self) -> int:
        restored = self.ckpt.restore(self.state)
        if restored is None:
            return 0
        self.state = restored.state
        self.kl.restore(restored.meta.get("kl_history"), restored.step)
        if restored.data:
            self.data.set_state(restored.data)
        print(f"resumed from {self.ckpt.directory} step {restored.step}")
        return restored.step

    # ------------------------------------------------------------------ loop
    def train_step(self, step: int) -> dict[str, float]:
        batch = next(self.data)
        t0 = time.perf_counter()
        inputs = self._inputs(batch)
        key = jax.random.fold_in(jax.random.key(self.config.seed), step)
        out = self._rollout_fn(inputs)(self.state.params["policy"], self.partner, inputs, key)
        jax.block_until_ready(out)
        t1 = time.perf_counter()
        comps, token_rewards = self._reward(inputs, out)
        jax.block_until_ready(token_rewards)
        t2 = time.perf_counter()
        rl_batch = Batch(
            out.sequence, out.sequence_mask, out.policy_mask, token_rewards, out.behaviour_logprobs
        )
        # The update donates the state; the policy it measures the KL of is copied first.
        before = self._copy(self.state.params["policy"]) if self.rollback else None
        self.state, metrics = self._update_fn(rl_batch)(self.state, rl_batch, self.ref)
        metrics = to_host(metrics)
        if self.kl.record(step, float(metrics["kl"])) and before is not None:
            self._within = (step, before)
        t3 = time.perf_counter()
        lengths = to_host((out.policy.lengths, out.partner.lengths))
        n_tokens = float(lengths[0].sum() + lengths[1].sum())
        logs = {k: float(v) for k, v in metrics.items()}
        logs.update({f"reward/{k}": float(np.mean(v)) for k, v in to_host(comps).items()})
        logs.update(
            {
                "time/rollout_s": t1 - t0,
                "time/reward_s": t2 - t1,
                "time/update_s": t3 - t2,
                "throughput/generated_tokens_per_s": n_tokens / max(t1 - t0, 1e-9),
                "response_length": float(lengths[0].mean()),
            }
        )
        return logs

    def evaluate(self, step: int, tag: str, policy: Any = None) -> dict[str, float]:
        policy = self.state.params["policy"] if policy is None else policy
        result = evaluate(self.run, policy, seed=self.config.seed)
        self.writer.write(step, result.metrics, prefix="eval/")
        if jax.process_index() == 0:
            path = self.workdir / "samples" / f"{tag}_step{step:06d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n\n".join(result.dialogues) + "\n")
            lines = eval_lines_path(self.workdir, tag, step)
            save_eval_lines(lines, result.per_line, result.persona_ids)
        return result.metrics

    def changes(self, final: int) -> dict[str, Any] | None:
        """Before -> after changes with persona-bootstrap intervals, from the saved per-line
        scores (so a resumed run, whose before-evaluation ran in an earlier process, has them
        too); None without both evaluations."""
        before = eval_lines_path(self.workdir, "before", 0)
        after = eval_lines_path(self.workdir, "after", final)
        if jax.process_index() != 0 or not (before.is_file() and after.is_file()):
            return None
        changes = changes_between(before, after, seed=self.config.seed)
        return {name: c.to_dict() for name, c in changes.items()}

    def draw_curves(self) -> None:
        """``curves.png`` beside the metrics; a drawing failure only warns, as the run's
        checkpoints and metrics are already written and the result must still be returned."""
        if jax.process_index() != 0:
            return
        try:
            path = plot_run(self.workdir)
        except Exception as err:  # a plot must not cost the run its result
            print(f"warning: training curves not drawn: {err!r}")
        else:
            print(f"training curves: {path}")

    def train(self) -> dict[str, Any]:
        c = self.config
        start = self.maybe_resume()
        if jax.process_index() == 0:
            widths = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.run.widths).items())
            print(f"episode input widths (tokens; 0 in episode.widths = fitted): {widths}")
        before = None
        # An evaluation is assumed to cost what the latest one did, the before-evaluation or an
        # in-training one (a resumed run reserves nothing until it has measured one).
        eval_s = 0.0
        if start == 0 and c.eval.before_after:
            t_eval = time.perf_counter()
            before = self.evaluate(start, "before")
            eval_s = time.perf_counter() - t_eval
        t_start = t_step = time.perf_counter()
        bar = tqdm(
            range(start, c.train.steps),
            initial=start,
            total=c.train.steps,
            desc="train",
            disable=jax.process_index() != 0,
        )
        step = start
        for step in bar:
            logs = self.train_step(step)
            done = step + 1
            if done % c.train.log_every == 0:
                self.writer.write(done, logs)
            bar.set_postfix(reward=f"{logs['reward/total']:.3f}", kl=f"{logs['kl']:.3f}")
            if c.train.save_every and done % c.train.save_every == 0:
                self.save(done)
            mid_eval_s = 0.0
            if evaluates_after(done, c.train.eval_every, c.train.steps):
                t_eval = time.perf_counter()
                self.evaluate(done, "eval")
                mid_eval_s = eval_s = time.perf_counter() - t_eval
            now = time.perf_counter()
            # A step's cost leaves out an in-training evaluation; the next step is charged one
            # only when it will run one (as long as the latest evaluation took).
            step_s, t_step = now - t_step - mid_eval_s, now
            next_evaluates = evaluates_after(done + 1, c.train.eval_every, c.train.steps)
            next_s = step_s + (eval_s if next_evaluates else 0.0)
            minutes = (now - t_start) / 60
            if done >= c.train.steps:
                break
            if c.train.max_minutes and minutes > c.train.max_minutes:
                print(f"stopping after {minutes:.1f} min (train.max_minutes) at step {done}")
                break
            if past_deadline(now - self.t_created, next_s, eval_s, c.train.deadline_minutes):
                print(
                    f"stopping at step {done}: another step ({next_s:.0f} s) and the "
                    f"after-evaluation ({eval_s:.0f} s) would pass train.deadline_minutes "
                    f"({c.train.deadline_minutes:g}) of the job"
                )
                break
        final = step + 1 if c.train.steps > start else start
        if self.ckpt.latest_step != final:
            self.save(final, force=True)
        self.ckpt.wait()
        policy_step, policy = self.handed_over(final)
        after = self.evaluate(policy_step, "after", policy) if c.eval.before_after else None
        self.writer.close()
        self.draw_curves()
        rolled_back = policy_step != final
        return {
            "before": before,
            "after": after,
            "steps": final,
            "policy_step": policy_step,
            "kl": self.kl.summary(policy_step if rolled_back else None),
            "change": self.changes(policy_step) if after is not None else None,
        }

    def handed_over(self, final: int) -> tuple[int, Any]:
        """(policy step, policy parameters) the run hands over: the last policy, or with
        ``train.rollback_over_kl_budget`` the latest one within the KL budget when the run
        ends over it (also saved to ``workdir/within_budget`` for ``export_hf.py``)."""
        last = (final, self.state.params["policy"])
        if not self.rollback or self.kl.ends_within in (None, True):
            return last
        target = self.kl.latest_admissible()
        kl = self.kl
        over = (
            f"the run ends over its KL budget (last policy {kl.kls[-1]:.2f}, mean of the last "
            f"steps {kl.trailing_mean(len(kl.kls) - 1):.2f}; budget {kl.budget:g})"
        )
        if target is None:
            print(f"warning: {over} and no policy of this run was within it; keeping the last")
            return last
        if self._within is not None and self._within[0] == target:
            policy = self._within[1]
        elif target in self.ckpt.all_steps():  # a resumed run's earlier policy
            policy = self.ckpt.restore(self.state, step=target).state.params["policy"]
        else:
            print(
                f"warning: {over}; policy step {target}, the latest within it, was neither kept "
                "since the resume nor checkpointed; keeping the last"
            )
            return last
        print(f"{over}: handing over policy step {target}, the latest within it")
        saver = Checkpointer(self.workdir / "within_budget", max_to_keep=1, async_save=False)
        if target not in saver.all_steps():  # (a resumed run may have saved it already)
            saver.save(target, {"params": {"policy": policy}}, meta=self._meta(), force=True)
        saver.close()
        return target, policy


def train(config: ConfigDict) -> dict[str, Any]:
    trainer = Trainer(config)
    try:
        return trainer.train()
    finally:
        trainer.ckpt.close()
