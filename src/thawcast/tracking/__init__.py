"""Tracking: the MLflow store and model registry, the Optuna studies tracked in MLflow, and the DVC lock reader (the
only modules besides the stages that talk to them)."""
