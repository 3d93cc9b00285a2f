"""Training a cell model: the one recipe ``train-cells`` and ``seed-spread-cells`` share (issue "Every grid cell").

A cell model is a band architecture with no unit embedding, trained on the seen cells' training windows (an epoch a
fresh sample of ``cells.windows_per_epoch``, gathered batch by batch), with early stopping on a fixed sample of the
seen cells' validation windows. Held-out cells and test years reach neither the fit nor the scalers
(:func:`~thawcast.prep.cell_windows.build_cell_history`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import lightning as L

from thawcast.analysis.metrics import scores
from thawcast.config import Config, TrainingConfig
from thawcast.learn.settings import ModelSettings
from thawcast.learn.training import FitResult, LazyWindows, WindowTensors, fit
from thawcast.models.packed import PackedModel
from thawcast.models.registry import build_model
from thawcast.parallel import torch_threads, with_shared
from thawcast.prep.cell_windows import CellHistory, subsample
from thawcast.prep.windows import WindowSet
from thawcast.variables import TARGETS


@dataclass(frozen=True)
class CellTraining:
    """The windows every cell model of a configuration trains on: the seen cells' training windows and a fixed
    sample of their validation windows, with the training settings of ``cells``."""

    history: CellHistory
    train: WindowSet
    validation: WindowSet
    training: TrainingConfig

    @classmethod
    def build(cls, cfg: Config, history: CellHistory) -> CellTraining:
        return cls(history, history.windows("train", "seen"),
                   subsample(history.windows("validation", "seen"), cfg.cells.validation_windows, cfg.seed),
                   cfg.cells.training(cfg.training))

    @property
    def seen(self) -> int:
        return int((~self.history.held_out).sum())


def cell_settings(cfg: Config, arch: str) -> ModelSettings:
    """A cell model's settings: the architecture's ``models`` defaults with the ``cells`` training settings."""
    return ModelSettings(arch, cfg.models.hparams(arch), cfg.cells.training(cfg.training), 0,
                         "params.yaml (models, cells)")


def train_cell_model(cfg: Config, arch: str, data: CellTraining, seed: int,
                     on_epoch: Callable[[int, dict], None] | None = None) -> tuple[PackedModel, FitResult]:
    """Build ``arch`` from ``seed`` and fit it on ``data``; the same seed gives the same weights (bit for bit on
    CPU), wherever it runs."""
    settings = cell_settings(cfg, arch)
    L.seed_everything(seed, workers=True, verbose=False)
    net = build_model(arch, data.train.n_features, 1, settings.hparams, 0, len(TARGETS))
    result = fit(net, LazyWindows(data.train), WindowTensors.from_windows(data.validation, unit_ids=False),
                 data.training, seed, on_epoch=on_epoch, label=f"cells-{arch} seed {seed}",
                 windows_per_epoch=cfg.cells.windows_per_epoch)
    targets = data.history.scalers["targets"]
    packed = PackedModel(net, targets.mean, targets.std, data.history.feature_names, data.history.length, TARGETS,
                         arch, unit_ids=False)
    return packed, result


def validation_scores(packed: PackedModel, data: CellTraining) -> dict[str, float]:
    """RMSE, MAE and R2 (degC) of a cell model on the validation sample it stopped early on."""
    val = data.validation
    with torch_threads(1):
        return scores(data.history.y_degc[val.band, val.last + 1], packed.predict_windows(val))


def _train_job(shared: tuple[Config, CellTraining], job: tuple[str, int]) -> PackedModel:
    cfg, data = shared
    arch, seed = job
    return train_cell_model(cfg, arch, data, seed)[0]


def train_cell_models(cfg: Config, data: CellTraining, jobs: Sequence[tuple[str, int]], workers: int = 1,
                      ) -> Iterator[tuple[int, PackedModel]]:
    """Train every ``(architecture, seed)`` job on ``data``; yield ``(job index, model)`` as each ends, from
    ``workers`` spawned processes (:func:`thawcast.parallel.with_shared`: each receives ``data`` once), or one
    after another here when ``workers`` is 1 or each training runs on several devices (DDP spawns its own)."""
    yield from with_shared(_train_job, (cfg, data), jobs, 1 if data.training.distributed else workers)
