"""Training entry: config handling, run set-up, evaluation and the train loop."""
