"""Stage ``tune-cells``: an Optuna study per cell model (``cells.architectures``; issue "Every grid cell").

The band models' machinery (:mod:`thawcast.stages.tune`: storage, resume, workers, pruning, MLflow parent and nested
runs) with the cell models' search (``tuning.cells``: budget and space) and trials: a cell model trained as
``train-cells`` trains it (:func:`thawcast.learn.cells.train_cell_model`), with the budget's epochs, scored on the
seen cells' validation sample. The held-out cells and the test years are never loaded into a trial (a test corrupts
both and gets the identical study). The first trial is the ``params.yaml`` settings.

Outputs: ``metrics/cell_tuning.json`` (per architecture: the study's summary and, under ``settings``, its best
settings in the best-params format, which ``train-cells`` and ``seed-spread-cells`` read) and
``metrics/cell_tuning.md``. Both are committed to git like the other metrics, so a fresh clone's ``dvc repro``
finds them current and does not tune again.
"""

from __future__ import annotations

import json
from pathlib import Path

from thawcast.analysis.tables import studies_markdown
from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.tracking.studies import CELL_OBJECTIVE, tune_all


def run(cfg: Config, paths: Layout | None = None) -> Path:
    """A study per cell architecture, side by side as the band studies run; ``metrics/cell_tuning.{json,md}``."""
    paths = paths or Layout.at()
    archs = cfg.cells.architectures
    studies = dict(zip(archs, tune_all(cfg, archs, paths, "cells"), strict=True))
    table = {"objective": CELL_OBJECTIVE, "architectures": studies}
    json_file = paths.metric("cell_tuning.json")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    paths.metric("cell_tuning.md").write_text(studies_markdown(
        studies, title="Tuning studies of the cell models",
        objective=f"Objective: {CELL_OBJECTIVE}, lower is better; 'defaults' = the params.yaml settings (each"
                  f" study's first trial); {cfg.tuning.cells.budget.max_epochs} epochs at most per trial."))
    return json_file
