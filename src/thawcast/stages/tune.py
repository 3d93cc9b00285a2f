"""Stage ``tune``: an Optuna study per architecture (``thawcast tune [<arch>]``), tracked in MLflow
(:mod:`thawcast.tracking.studies`: objective, pruning, MLflow runs, workers).

Workers: ``tuning.workers`` (or ``thawcast tune <arch> --workers N``) processes run trials of the study side by
side, exactly ``n_trials`` counted trials in total; more processes pointed at the same storage from other machines
join the same study. One worker (the default) draws the same trials on every rebuild.

Outputs (``data/tuning/<arch>/``): ``best_params.json`` (what ``train@<arch>`` reads),
``summary.json``, ``trials.csv`` and the plots (PNG).
"""

from __future__ import annotations

from pathlib import Path

from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.tracking.studies import tune_all, tune_one


def run(cfg: Config, arch: str | None = None, paths: Layout | None = None) -> Path:
    """Tune ``arch``, or every architecture of ``training.architectures`` (the DVC stage): their studies run side
    by side in ``compute.workers`` processes (each study in one, so each draws the same trials as alone), or one
    after another when each study has several ``tuning.workers`` of its own or the storage is SQLite (one
    writer at a time)."""
    paths = paths or Layout.at()
    if arch is not None:
        cfg.training.require(arch)
        tune_one(cfg, arch, paths)
        return paths.study(arch)
    tune_all(cfg, cfg.training.architectures, paths)
    return paths.tuning
