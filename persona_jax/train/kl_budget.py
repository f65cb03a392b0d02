"""The KL budget of a run: which of its policies stayed within it.

A step's episode KL to the reference is measured on the rollouts of the policy *before* that
step's update, so after ``d`` updates the history holds the KL of policies 0 .. d-1 (policy
``s`` = the parameters after ``s`` updates; policy 0 is the reference itself). The figure a
run reports is the mean over the last ``window`` measured steps, which smooths the few
episodes a step samples.

A policy is *admissible* when its own measured KL and that trailing mean both stay within
the budget. With ``train.rollback_over_kl_budget`` a run that ends over its budget returns the
latest admissible policy instead of the last one: a KL budget is a constraint on what the run
hands over, and the adaptive coefficient, which acts once a step, can lag a fast climb.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class KLHistory:
    """Measured episode KL per policy step, kept in checkpoint metadata for a resumed run."""

    budget: float
    window: int = 3
    steps: list[int] = dataclasses.field(default_factory=list)
    kls: list[float] = dataclasses.field(default_factory=list)

    def record(self, step: int, kl: float) -> bool:
        """Add policy ``step``'s measured KL; whether that policy is admissible."""
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"KL of policy step {step} recorded after step {self.steps[-1]}")
        self.steps.append(int(step))
        self.kls.append(float(kl))
        return self.admissible(len(self.steps) - 1)

    def trailing_mean(self, index: int) -> float:
        """Mean KL of the ``window`` measured steps ending at history entry ``index``."""
        return float(np.mean(self.kls[max(0, index - self.window + 1) : index + 1]))

    def admissible(self, index: int) -> bool:
        return self.kls[index] <= self.budget and self.trailing_mean(index) <= self.budget

    @property
    def ends_within(self) -> bool | None:
        """Whether the last measured policy is admissible (None before any step)."""
        return self.admissible(len(self.steps) - 1) if self.steps else None

    def latest_admissible(self) -> int | None:
        """The policy step of the latest admissible policy, if any."""
        for i in range(len(self.steps) - 1, -1, -1):
            if self.admissible(i):
                return self.steps[i]
        return None

    def summary(self, policy_step: int | None = None) -> dict[str, Any]:
        """The run's KL figures: the trailing mean at the end of the history, or at
        ``policy_step`` when the run hands over that earlier policy."""
        out: dict[str, Any] = {"last_steps_mean": None, "budget": self.budget}
        if not self.steps:
            return {**out, "within_budget": None}
        i = len(self.steps) - 1 if policy_step is None else self.steps.index(policy_step)
        mean = self.trailing_mean(i)
        out.update(last_steps_mean=mean, within_budget=mean <= self.budget)
        if policy_step is not None:
            out.update(
                policy_kl=self.kls[i],
                at_end=self.trailing_mean(len(self.steps) - 1),
                rolled_back_to=policy_step,
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "kls": list(self.kls)}

    def restore(self, stored: dict[str, Any] | None, upto: int) -> None:
        """Take the stored history of policies before step ``upto`` (a resumed run's)."""
        stored = stored or {}
        steps, kls = stored.get("steps", []), stored.get("kls", [])
        pairs = [(s, k) for s, k in zip(steps, kls, strict=True) if s < upto]
        self.steps = [int(s) for s, _ in pairs]
        self.kls = [float(k) for _, k in pairs]
