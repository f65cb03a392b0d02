"""Evaluation: consistency metrics of dialogues, and judge agreement with stored verdicts.

- `lines`: one line to judge in its conversation, and each judge's input for it;
- `judging`: the distilled and the LLM judge behind one interface (`Verdict` per line);
- `dialogues` / `generate`: dialogues to score, read from released-format files or played
  by a policy on held-out personas;
- `scoring` / `report`: the three metrics per dialogue speaker, means with confidence
  intervals, markdown and plots;
- `agreement`: a judge against the release's stored verdicts (kappa, accuracy, F1);
- `sources` / `factory`: models (HF dir, GGUF, train.py run) and judges built from configs;
- `run`: the two jobs of `evaluate.py`.
"""
