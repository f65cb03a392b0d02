"""RL algorithms: advantage estimators, losses and the update steps built from them."""
