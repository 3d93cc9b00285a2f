"""Training a cell model: the one recipe ``tune-cells``, ``train-cells`` and ``seed-spread-cells`` share (issue
"Every grid cell").

A cell model is a band architecture with no unit embedding, trained on the seen cells' training windows (an epoch a
fresh sample of ``cells.windows_per_epoch``, gathered batch by batch), with early stopping on a fixed sample of the
seen cells' validation windows. Held-out cells and test years reach neither the fit nor the scalers
(:func:`~thawcast.prep.cell_windows.build_cell_history`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L

from thawcast.analysis.metrics import scores
from thawcast.config import Config
from thawcast.errors import ConfigError
from thawcast.learn.settings import ModelSettings, settings_from_record
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
    sample of their validation windows."""

    history: CellHistory
    train: WindowSet
    validation: WindowSet

    @classmethod
    def build(cls, cfg: Config, history: CellHistory) -> CellTraining:
        return cls(history, history.windows("train", "seen"),
                   subsample(history.windows("validation", "seen"), cfg.cells.validation_windows, cfg.seed))

    @property
    def seen(self) -> int:
        return int((~self.history.held_out).sum())


def default_cell_settings(cfg: Config, arch: str) -> ModelSettings:
    """A cell model's ``params.yaml`` settings: the architecture's ``models`` defaults with the ``cells`` training
    settings (no unit embedding)."""
    cfg.cells.require(arch)
    return ModelSettings(arch, cfg.models.hparams(arch), cfg.cells.training(cfg.training), 0,
                         "params.yaml (models, cells)")


def cell_settings(cfg: Config, arch: str, tuning_file: Path | None = None) -> ModelSettings:
    """The settings a cell model trains with: the ``tune-cells`` study's best (``tuning_file``,
    ``metrics/cell_tuning.json``) where it exists, else :func:`default_cell_settings`. Epochs and patience stay
    ``cells``'; the study sets the hyper-parameters, learning rate, batch size and weight decay.

    Raises
    ------
    ConfigError
        ``tuning_file`` is unreadable, has no study of ``arch``, or holds settings the architecture refuses.
    """
    defaults = default_cell_settings(cfg, arch)
    if tuning_file is None or not Path(tuning_file).exists():
        return defaults
    try:
        studies = json.loads(Path(tuning_file).read_text())["architectures"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{tuning_file}: unreadable cell tuning record ({type(exc).__name__}: {exc});"
                          " rerun `thawcast tune-cells` (dvc repro does)") from None
    if arch not in studies:
        raise ConfigError(f"{tuning_file} has no study of {arch} (it has {sorted(studies)}); rerun"
                          " `thawcast tune-cells` (dvc repro does)")
    settings = settings_from_record(cfg, arch, studies[arch].get("settings"), str(tuning_file),
                                    defaults.training)
    return replace(settings, band_embedding_dim=0)


def train_cell_model(settings: ModelSettings, data: CellTraining, seed: int, windows_per_epoch: int,
                     callbacks: Sequence = (), on_epoch: Callable[[int, dict], None] | None = None,
                     ) -> tuple[PackedModel, FitResult]:
    """Build ``settings.architecture`` from ``seed`` and fit it on ``data``, an epoch ``windows_per_epoch``
    windows; the same seed gives the same weights (bit for bit on CPU), wherever it runs."""
    arch = settings.architecture
    L.seed_everything(seed, workers=True, verbose=False)
    net = build_model(arch, data.train.n_features, 1, settings.hparams, 0, len(TARGETS))
    result = fit(net, LazyWindows(data.train), WindowTensors.from_windows(data.validation, unit_ids=False),
                 settings.training, seed, callbacks=callbacks, on_epoch=on_epoch, label=f"cells-{arch} seed {seed}",
                 windows_per_epoch=windows_per_epoch)
    targets = data.history.scalers["targets"]
    packed = PackedModel(net, targets.mean, targets.std, data.history.feature_names, data.history.length, TARGETS,
                         arch, unit_ids=False)
    return packed, result


def validation_scores(packed: PackedModel, data: CellTraining) -> dict[str, float]:
    """RMSE, MAE and R2 (degC) of a cell model on the validation sample it stopped early on."""
    val = data.validation
    with torch_threads(1):
        return scores(data.history.y_degc[val.band, val.last + 1], packed.predict_windows(val))


def _train_job(shared: tuple[int, CellTraining], job: tuple[ModelSettings, int]) -> PackedModel:
    windows_per_epoch, data = shared
    settings, seed = job
    return train_cell_model(settings, data, seed, windows_per_epoch)[0]


def train_cell_models(cfg: Config, data: CellTraining, jobs: Sequence[tuple[ModelSettings, int]], workers: int = 1,
                      ) -> Iterator[tuple[int, PackedModel]]:
    """Train every ``(settings, seed)`` job on ``data``; yield ``(job index, model)`` as each ends, from
    ``workers`` spawned processes (:func:`thawcast.parallel.with_shared`: each receives ``data`` once), or one
    after another here when ``workers`` is 1 or a training runs on several devices (DDP spawns its own)."""
    distributed = any(settings.training.distributed for settings, _ in jobs)
    yield from with_shared(_train_job, (cfg.cells.windows_per_epoch, data), jobs, 1 if distributed else workers)
