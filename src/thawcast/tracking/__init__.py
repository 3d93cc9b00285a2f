"""Tracking: the MLflow store and model registry, and the DVC lock reader (the only modules that talk to them)."""
