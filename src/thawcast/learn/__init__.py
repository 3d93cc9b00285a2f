"""Learning: model settings, the generic training loop, Optuna tuning, seed statistics."""
