"""Stage ``tune-cells``: an Optuna study per cell model (``cells.architectures``; issue "Every grid cell").

The band studies' machinery (:mod:`thawcast.tracking.studies`: storage, resume, workers, pruning, MLflow parent and
nested runs) with the cell models' search (``tuning.cells``: budget and space) and trials (:data:`CELL_STUDIES`): a
cell model trained as ``train-cells`` trains it (:func:`thawcast.learn.cells.train_cell_model`), with the budget's
epochs, scored on the seen cells' validation sample. The held-out cells and the test years never reach a trial's
fit or score (a test corrupts both and gets the identical study). The first trial is the ``params.yaml`` settings.

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
from thawcast.learn.cells import (
    CellTraining,
    default_cell_settings,
    train_cell_model,
    validation_scores,
)
from thawcast.learn.settings import ModelSettings
from thawcast.learn.training import FitResult
from thawcast.learn.tuning import StudyKind, cell_search
from thawcast.prep.cell_windows import build_cell_history, open_cells
from thawcast.tracking.studies import tune_all

#: What a cell model's study minimises.
CELL_OBJECTIVE = "validation RMSE (degC) on the seen cells' validation sample"


def _cell_data(cfg: Config, paths: Layout) -> CellTraining:
    return CellTraining.build(cfg, build_cell_history(cfg, open_cells(paths.cell_store, paths.static_cells)))


def _cell_fit(cfg: Config, settings: ModelSettings, data: CellTraining, callbacks: list, on_epoch,
              label: str) -> tuple[float, FitResult]:
    packed, result = train_cell_model(settings, data, cfg.seed, cfg.cells.windows_per_epoch, callbacks=callbacks,
                                      on_epoch=on_epoch)
    return validation_scores(packed, data)["rmse"], result


def _cells(paths: Layout) -> Path:
    return paths.cells


#: The cell models' studies: one network across the seen cells per trial, no unit embedding.
CELL_STUDIES = StudyKind("cells", "tune-cells", CELL_OBJECTIVE, "tuning.cells.space", cell_search,
                         default_cell_settings, _cell_data, _cell_fit, _cells, folder=False, unit_embedding=False)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    """A study per cell architecture, side by side as the band studies run; ``metrics/cell_tuning.{json,md}``."""
    paths = paths or Layout.at()
    archs = cfg.cells.architectures
    studies = dict(zip(archs, tune_all(cfg, archs, paths, CELL_STUDIES), strict=True))
    table = {"objective": CELL_OBJECTIVE, "architectures": studies}
    json_file = paths.metric("cell_tuning.json")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(table, indent=2, allow_nan=False) + "\n")
    paths.metric("cell_tuning.md").write_text(studies_markdown(
        studies, title="Tuning studies of the cell models",
        objective=f"Objective: {CELL_OBJECTIVE}, lower is better; 'defaults' = the params.yaml settings (each"
                  f" study's first trial); {cfg.tuning.cells.budget.max_epochs} epochs at most per trial."))
    return json_file
