"""One generic Lightning training loop for every architecture, and batch prediction.

The network is a plain :class:`~thawcast.models.base.BandSequenceModel`; :class:`SequenceRegressor`
wraps any of them with the loss (MSE on scaled targets), the optimiser (AdamW) and the
logging of ``train_loss`` / ``val_loss`` per epoch. :func:`fit` runs it with early stopping on
:data:`MONITOR` and keeps the weights of the best validation epoch.

Windows are materialised once per split as in-memory tensors (:class:`WindowTensors`) and
served by :class:`TensorBatches`, a seeded shuffling iterator over tensor slices: no
``DataLoader`` workers and no per-sample collation, which dominate small-RNN speed on CPU.

This module knows nothing about MLflow or DVC; callers observe epochs through ``on_epoch``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from thawcast.analysis.metrics import scores
from thawcast.config import TrainingConfig
from thawcast.errors import ConfigError, DataError, ThawcastError
from thawcast.learn.settings import ModelSettings
from thawcast.models.base import BandSequenceModel
from thawcast.models.registry import build_model
from thawcast.parallel import torch_threads, with_shared
from thawcast.prep.windows import Scaler, WindowSet, load_scalers, open_windows
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)

#: The metric early stopping, best-weight selection and Optuna pruning all watch.
MONITOR = "val_loss"

# "GPU available: False, used: False" and friends: not actionable in a pipeline log.
# (mlflow imports the package under its old name too, hence both spellings.)
for _name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero",
              "lightning.fabric.utilities.seed", "lightning.pytorch.accelerators.cuda"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class TrainingError(ThawcastError):
    """Training cannot go on (a non-finite loss, an empty split)."""


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class WindowTensors:
    """One split as tensors: ``x [N, w, F]`` float32, ``band [N]`` int64, ``y [N, 4]`` float32 (or None)."""

    x: torch.Tensor
    band: torch.Tensor
    y: torch.Tensor | None

    @classmethod
    def from_windows(cls, ws: WindowSet, unit_ids: bool = True) -> WindowTensors:
        """Gather every window of ``ws`` (scaled inputs, and scaled targets when it has them). Without
        ``unit_ids`` the unit index is 0 for every window (models that see units through their attributes)."""
        if len(ws) == 0:
            raise TrainingError("the window set is empty")
        y = torch.from_numpy(np.ascontiguousarray(ws.targets(), dtype=np.float32)) if ws.y is not None else None
        band = ws.band.astype(np.int64) if unit_ids else np.zeros(len(ws), dtype=np.int64)
        return cls(torch.from_numpy(np.ascontiguousarray(ws.inputs(), dtype=np.float32)), torch.from_numpy(band), y)

    def __len__(self) -> int:
        return len(self.band)

    def take(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[idx], self.band[idx], self.y[idx]


@dataclass(frozen=True)
class LazyWindows:
    """Windows gathered a batch at a time from a :class:`WindowSet` (for sets too large to hold as ``[N, w, F]``
    tensors: the grid cells' hundreds of thousands). The unit index handed to the network is 0 for every window:
    these models see their units through attributes, not an id."""

    windows: WindowSet

    def __post_init__(self) -> None:
        if len(self.windows) == 0:
            raise TrainingError("the window set is empty")
        if self.windows.y is None:
            raise TrainingError("batches for training or validation need targets")

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def y(self) -> np.ndarray | None:
        return self.windows.y

    def take(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = idx.numpy() if isinstance(idx, torch.Tensor) else idx
        x = torch.from_numpy(self.windows.inputs(idx))
        return x, torch.zeros(len(x), dtype=torch.int64), torch.from_numpy(np.ascontiguousarray(self.windows.targets(idx)))


class TensorBatches:
    """Mini-batches ``(x, band, y)`` of :class:`WindowTensors` or :class:`LazyWindows`.

    With ``shuffle`` the order is a fresh permutation each pass, drawn from a generator seeded once: the sequence
    of batches is the same for the same seed. With ``per_epoch`` a pass is the first ``per_epoch`` windows of that
    permutation (a fresh sample of the windows each epoch, none twice within one).
    """

    def __init__(self, data: WindowTensors | LazyWindows, batch_size: int, shuffle: bool = False, seed: int = 0,
                 per_epoch: int | None = None) -> None:
        if data.y is None:
            raise TrainingError("batches for training or validation need targets")
        if per_epoch is not None and not shuffle:
            raise TrainingError("a sample of the windows per epoch needs shuffle")
        self.data, self.batch_size, self.shuffle = data, int(batch_size), shuffle
        self.per_epoch = len(data) if per_epoch is None else min(int(per_epoch), len(data))
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        world = _rank_world()[1]
        n = self.per_epoch
        return n // self.batch_size + (n % self.batch_size >= world)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches in order (or a fresh permutation); under DDP every process draws the same order and takes
        every ``world``-th window of each global batch, so the processes together see exactly the batch one
        process would (a last batch with fewer windows than processes is dropped)."""
        n, d = self.per_epoch, self.data
        rank, world = _rank_world()
        order = torch.randperm(len(d), generator=self.generator)[:n] if self.shuffle else None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if world > 1:
                if stop - start < world:
                    return
                yield d.take((order[start:stop] if order is not None else torch.arange(start, stop))[rank::world])
            else:
                yield d.take(slice(start, stop) if order is None else order[start:stop])


def _rank_world() -> tuple[int, int]:
    """This process's rank and the number of processes of a DDP run ((0, 1) outside one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# ---------------------------------------------------------------- the module
class SequenceRegressor(L.LightningModule):
    """Any band-sequence network trained with MSE on scaled targets and AdamW."""

    def __init__(self, net: BandSequenceModel, learning_rate: float, weight_decay: float, max_epochs: int = 1,
                 ) -> None:
        super().__init__()
        self.net, self.learning_rate, self.weight_decay = net, learning_rate, weight_decay
        # The per-epoch (train_loss, val_loss) record, NaN where no epoch ran: a buffer, so it travels with the
        # weights when DDP's spawned processes hand the trained module back.
        self.register_buffer("record", torch.full((max_epochs, 2), float("nan")))

    def forward(self, x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        return self.net(x, band)

    def _loss(self, batch, name: str) -> torch.Tensor:
        x, band, y = batch
        loss = nn.functional.mse_loss(self.net(x, band), y)
        if not torch.isfinite(loss):
            raise TrainingError(f"{name} is {loss.item()} at epoch {self.current_epoch}: training diverged"
                                " (try a lower training.learning_rate); nothing was registered")
        self.log(name, loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=self.trainer.world_size > 1)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "train_loss")

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, MONITOR)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


class EpochRecorder(L.Callback):
    """Keeps the best validation epoch's weights, records the history, reports progress."""

    def __init__(self, label: str, max_epochs: int, on_epoch: Callable[[int, dict], None] | None = None) -> None:
        self.label, self.max_epochs, self.on_epoch = label, max_epochs, on_epoch
        self.best: tuple[float, int, dict] | None = None

    def on_train_epoch_end(self, trainer, module) -> None:
        m = trainer.callback_metrics
        if MONITOR not in m:  # validation has not run in this epoch
            return
        row = {"train_loss": float(m["train_loss"]), MONITOR: float(m[MONITOR])}
        epoch = trainer.current_epoch
        module.record[epoch] = torch.tensor([row["train_loss"], row[MONITOR]])
        if self.best is None or row[MONITOR] < self.best[0]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in module.net.state_dict().items()}
            self.best = (row[MONITOR], epoch, state)
        if self.on_epoch is not None:
            self.on_epoch(epoch, row)
        if trainer.is_global_zero and (epoch == 0 or (epoch + 1) % 10 == 0):
            log.info("%s epoch %d/%d: train_loss %.4f val_loss %.4f (best %.4f at epoch %d)", self.label,
                     epoch + 1, self.max_epochs, row["train_loss"], row[MONITOR], self.best[0], self.best[1] + 1)

    def on_train_end(self, trainer, module) -> None:
        """The module ends holding the best epoch's weights (what DDP hands back to the calling process)."""
        if self.best is not None:
            module.net.load_state_dict(self.best[2])


class ThreadsPerProcess(L.Callback):
    """``threads`` torch threads in each DDP process for the fit (spawned processes start with torch's default)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def on_fit_start(self, trainer, module) -> None:
        torch.set_num_threads(self.threads)


# ---------------------------------------------------------------- fitting
@dataclass
class FitResult:
    """What :func:`fit` did: best epoch (0-based), its validation loss, the per-epoch history."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def stopped_early(self) -> bool:
        return self.epochs_run > 0 and self.best_epoch < self.epochs_run - 1


def _trainer(cfg: TrainingConfig, callbacks: Sequence = ()) -> L.Trainer:
    """The Lightning trainer of :func:`fit`; devices the machine cannot run are :class:`ConfigError`."""
    try:
        return L.Trainer(
            max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices,
            strategy="ddp_spawn" if cfg.distributed else "auto", deterministic=cfg.deterministic,
            gradient_clip_val=cfg.gradient_clip or None, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks))
    except MisconfigurationException as exc:
        raise ConfigError(f"training.devices {cfg.devices} / accelerator {cfg.accelerator}: {exc}") from None


def check_devices(cfg: TrainingConfig) -> None:
    """Raise :class:`ConfigError` now, before a stage logs or trains anything, if this machine cannot run
    ``training.accelerator`` on ``training.devices``."""
    _trainer(cfg)


def fit(net: BandSequenceModel, train: WindowTensors | LazyWindows, val: WindowTensors | LazyWindows,
        cfg: TrainingConfig, seed: int, callbacks: Sequence = (), on_epoch: Callable[[int, dict], None] | None = None,
        label: str = "model", windows_per_epoch: int | None = None) -> FitResult:
    """Train ``net`` in place; on return it holds the weights of the best validation epoch.

    Parameters
    ----------
    net
        Any registry architecture (built with the same seed for reproducibility).
    train, val
        Scaled windows of the training and validation splits.
    cfg
        Epochs, batch size, optimiser, patience, accelerator, CPU threads (set for the fit, then restored).
    callbacks
        Extra Lightning callbacks (e.g. an Optuna pruning callback watching :data:`MONITOR`).
    windows_per_epoch
        An epoch is this many training windows, a fresh sample each epoch (None: all of them).
    on_epoch
        Called as ``on_epoch(epoch, {"train_loss": ..., "val_loss": ...})`` after each epoch.

    Raises
    ------
    TrainingError
        A split is empty or the loss becomes NaN/inf (never a silently NaN-trained model).
    """
    if len(train) == 0 or len(val) == 0:
        raise TrainingError("training and validation splits must both have windows")
    if cfg.distributed and callbacks:
        raise TrainingError("extra callbacks (e.g. Optuna pruning) need training on one device (training.devices 1)")
    L.seed_everything(seed, workers=True, verbose=False)
    net.train()
    module = SequenceRegressor(net, cfg.learning_rate, cfg.weight_decay, cfg.max_epochs)
    # Spawned DDP processes cannot call back into this one: epochs are reported from the record afterwards.
    epochs = EpochRecorder(label, cfg.max_epochs, None if cfg.distributed else on_epoch)
    trainer = _trainer(cfg, callbacks=[EarlyStopping(MONITOR, patience=cfg.patience, mode="min", check_finite=True),
                                       epochs, ThreadsPerProcess(cfg.threads), *callbacks])
    t0 = time.perf_counter()
    with torch_threads(cfg.threads), _sharing_for(cfg), warnings.catch_warnings():
        # Our batches are in-memory tensor slices: there is no worker pool to size.
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; not ours to fix.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        trainer.fit(module, TensorBatches(train, cfg.batch_size, shuffle=True, seed=seed, per_epoch=windows_per_epoch),
                    TensorBatches(val, max(cfg.batch_size, 256)))
    seconds = time.perf_counter() - t0
    history = [{"epoch": e, "train_loss": float(r[0]), MONITOR: float(r[1])}
               for e, r in enumerate(module.record.cpu().tolist()) if not math.isnan(r[1])]
    if not history:
        raise TrainingError(f"{label}: no validation epoch completed")
    best = min(history, key=lambda row: (row[MONITOR], row["epoch"]))  # the first best epoch, as kept
    best_loss, best_epoch = best[MONITOR], best["epoch"]
    if cfg.distributed and on_epoch is not None:
        for row in history:
            on_epoch(row["epoch"], {"train_loss": row["train_loss"], MONITOR: row[MONITOR]})
    net.to("cpu").eval()
    device = str(trainer.strategy.root_device) + (f" x{cfg.devices} (DDP)" if cfg.distributed else "")
    log.info("%s: best val_loss %.4f at epoch %d of %d (%.1f s on %s)", label, best_loss, best_epoch + 1,
             len(history), seconds, device)
    return FitResult(best_epoch, best_loss, len(history), history, seconds, device)


@contextmanager
def _sharing_for(cfg: TrainingConfig) -> Iterator[None]:
    """For DDP's spawned processes, tensors handed over through shared-memory files: torch's default, file
    descriptors, fails to start them here ("bad value(s) in fds_to_keep"). Restored afterwards."""
    if not cfg.distributed:
        yield
        return
    import torch.multiprocessing as mp

    before = mp.get_sharing_strategy()
    mp.set_sharing_strategy("file_system")
    try:
        yield
    finally:
        mp.set_sharing_strategy(before)


@dataclass
class TrainingData:
    """The scaled training and validation splits one training run reads, and the target scaler."""

    train: WindowSet
    validation: WindowSet
    targets: Scaler

    def __post_init__(self) -> None:
        self.tensors = {"train": WindowTensors.from_windows(self.train),
                        "validation": WindowTensors.from_windows(self.validation)}

    @property
    def n_bands(self) -> int:
        return self.train.x.shape[0]


def train_model(settings: ModelSettings, data: TrainingData, seed: int, callbacks: Sequence = (),
                on_epoch: Callable[[int, dict], None] | None = None, label: str | None = None,
                ) -> tuple[BandSequenceModel, FitResult]:
    """Build ``settings.architecture`` with ``seed`` and :func:`fit` it: the same seed gives the same model."""
    L.seed_everything(seed, workers=True, verbose=False)
    net = build_model(settings.architecture, data.train.n_features, data.n_bands, settings.hparams,
                      settings.band_embedding_dim, len(TARGETS))
    result = fit(net, data.tensors["train"], data.tensors["validation"], settings.training, seed,
                 callbacks=callbacks, on_epoch=on_epoch, label=label or settings.architecture)
    return net, result


def _train_job(data: TrainingData, job: tuple[ModelSettings, int, str]) -> BandSequenceModel:
    settings, seed, label = job
    return train_model(settings, data, seed, label=label)[0]


def train_many(jobs: Sequence[tuple[ModelSettings, int, str]], data: TrainingData, workers: int = 1,
               ) -> Iterator[tuple[int, BandSequenceModel]]:
    """Train every ``(settings, seed, label)`` job on ``data``; yield ``(job index, trained net)`` as each ends.

    With ``workers > 1`` the jobs run in that many spawned processes (:func:`thawcast.parallel.with_shared`),
    each receiving ``data`` once; jobs that train on several devices run here one after another (DDP spawns its
    own processes). A job's model does not depend on where or beside what it ran: every run trains with
    ``training.threads`` threads from its own seed.
    """
    distributed = any(settings.training.distributed for settings, _, _ in jobs)
    yield from with_shared(_train_job, data, jobs, 1 if distributed else workers)


@torch.no_grad()
def predict(net: nn.Module, data: WindowTensors, batch_size: int = 1024) -> np.ndarray:
    """Scaled predictions ``[N, n_targets]`` of ``net`` (eval mode, CPU) for every window, on one torch thread:
    the bits of every prediction and score then do not depend on the machine's core count (or on its load)."""
    net = net.to("cpu").eval()
    with torch_threads(1):
        out = [net(data.x[i:i + batch_size], data.band[i:i + batch_size]) for i in range(0, len(data), batch_size)]
    return torch.cat(out).numpy()


def score_degc(net: nn.Module, ws: WindowSet, targets: Scaler) -> dict[str, float]:
    """RMSE, MAE and R2 in degC of ``net`` on every window of ``ws`` (targets un-scaled)."""
    pred = targets.inverse(predict(net, WindowTensors.from_windows(ws)))
    return scores(targets.inverse(ws.targets()), pred)


def load_training_data(history: Path, scaler: Path) -> TrainingData:
    """The training and validation splits and the target scaler (never the test split).

    Raises
    ------
    DataError
        The scaler was written for another feature order than the window file's.
    """
    train, val = (open_windows(history, s) for s in ("train", "validation"))
    scalers = load_scalers(scaler)
    if tuple(scalers["features"].names) + (("z",) if "signal" in scalers else ()) != train.feature_names:
        raise DataError(scaler, "scaler features differ from the window file's feature order")
    return TrainingData(train, val, scalers["targets"])
