"""A judge against the release's stored (70B) verdicts.

    python evaluate.py --config=configs/judge_agreement.py --config.judge=distilled|llm \
        [--config.data_dir=DIR] [--config.max_lines=N] [--config.split=test|all]
        [--config.swap_control=True]

Accuracy, Cohen's kappa and F1 of the inconsistent class, per task and overall, for
prompt-to-line and line-to-line. `split` defaults to the held-out test personas, so the
distilled judge is never scored on lines it was trained or tuned on. Files whose stored scores
resolve to "YES = consistent" (doubtful labels) are left out unless
`exclude_yes_consistent=False`. Judge settings as in configs/eval.py.
"""

from ml_collections import ConfigDict

from configs.eval import add_judges


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.kind = "agreement"
    c.seed = 0  # also draws the `max_lines` sample
    c.output_dir = "runs/judge_agreement"
    c.data_dir = ""  # "" = $PERSONA_JAX_CONSISTENT_LLMS_DIR or ../shared/consistent_llms
    c.split = "test"  # train | validation | test | all
    c.exclude_yes_consistent = True
    c.max_lines = 0  # 0 = every labelled line of the split
    # Judge the prompt-to-line lines again with another persona of their task (one more pass):
    # how much the verdicts depend on the persona at all.
    c.swap_control = False
    add_judges(c)
    c.report = ConfigDict(dict(ci="bootstrap", level=0.95, bootstrap_samples=2000))
    return c
