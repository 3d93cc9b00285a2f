"""Typed, strict configuration parsed once from ``params.yaml``.

Only the CLI reads YAML (:func:`load_config`); everything else receives the typed
sections. Unknown keys anywhere are an error, so a typo in ``params.yaml`` never
silently falls back to a default.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thawcast.catalogue import ARCHITECTURES, BIAS_METHODS, CMIP5_EXPERIMENTS, FEATURES
from thawcast.errors import ConfigError
from thawcast.layout import redacted
from thawcast.models.hparams import (
    HPARAMS,
    BiLSTMParams,
    ConvLSTMParams,
    GRUParams,
    TCNParams,
    TransformerParams,
)

#: Table 1 of Rahaman (2025): lower/upper latitude edges of the six bands (deg N).
PAPER_BAND_EDGES: tuple[float, ...] = (
    59.2632802,
    61.275545,
    63.2878288,
    65.300103,
    67.3123774,
    69.3246517,
    71.336926,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class YearRange(_Section):
    """An inclusive range of whole years."""

    start_year: int = 2001
    end_year: int = 2023

    @model_validator(mode="after")
    def _ordered(self) -> YearRange:
        if self.end_year < self.start_year:
            raise ValueError(f"end_year {self.end_year} is before start_year {self.start_year}")
        return self

    @property
    def n_months(self) -> int:
        return 12 * (self.end_year - self.start_year + 1)

    def within(self, other: YearRange) -> bool:
        return other.start_year <= self.start_year and self.end_year <= other.end_year

    def overlaps(self, other: YearRange) -> bool:
        return self.start_year <= other.end_year and other.start_year <= self.end_year

    def __str__(self) -> str:
        return f"{self.start_year}-{self.end_year}"


#: Years of observed (ERA5-Land) data the pipeline uses, inclusive.
PeriodConfig = YearRange


class StudyAreaConfig(_Section):
    """Latitude bands (Table 1 edges by default) and the longitude range of the study box."""

    band_edges: tuple[float, ...] = PAPER_BAND_EDGES
    lon_min: float = -168.0
    lon_max: float = -141.0

    @field_validator("band_edges")
    @classmethod
    def _increasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) < 2:
            raise ValueError("band_edges needs at least two edges (one band)")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"band_edges must be strictly increasing, got {list(v)}")
        if v[0] < -90 or v[-1] > 90:
            raise ValueError("band_edges must lie within -90..90")
        return v

    @model_validator(mode="after")
    def _lon(self) -> StudyAreaConfig:
        if not (-180 <= self.lon_min < self.lon_max <= 180):
            raise ValueError("need -180 <= lon_min < lon_max <= 180")
        return self

    @property
    def n_bands(self) -> int:
        return len(self.band_edges) - 1

    @property
    def band_labels(self) -> list[str]:
        """``"59.3-61.3N"`` per band, for tables and figures."""
        return [f"{a:.1f}-{b:.1f}N" for a, b in itertools.pairwise(self.band_edges)]


class SourceConfig(_Section):
    """Where raw data come from.

    ``synthetic`` generates the embedded synthetic Alaska; ``files`` ingests the user's
    downloaded ERA5-Land / CMIP5 NetCDF files from the two folders (and an optional
    rasterised lithology file and ERA5-Land invariant geopotential file, which gives the grid
    cells their height).
    """

    kind: Literal["synthetic", "files"] = "synthetic"
    era5land_dir: Path = Path("data/external/era5land")
    cmip5_dir: Path = Path("data/external/cmip5")
    lithology_file: Path | None = None
    geopotential_file: Path | None = None


class Cmip5Config(_Section):
    """Which CMIP5 model, member and experiments are read."""

    model: str = "IPSL-CM5A-MR"
    ensemble: str = "r1i1p1"
    experiments: tuple[str, ...] = CMIP5_EXPERIMENTS

    @field_validator("experiments")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in v if e not in CMIP5_EXPERIMENTS]
        if unknown:
            raise ValueError(f"unknown experiment(s) {unknown}; valid: {list(CMIP5_EXPERIMENTS)}")
        if "historical" not in v:
            raise ValueError("experiments must include 'historical'")
        return v


class SyntheticConfig(_Section):
    """The embedded synthetic Alaska (see ``thawcast.ingest.synthetic``)."""

    resolution_deg: float = Field(0.25, gt=0.0, le=2.0)
    hist_start_year: int = 1996
    scenario_end_year: int = 2100
    spinup_years: int = Field(8, ge=0)
    soil_dt_days: float = Field(2.0, gt=0.0, le=10.0)
    warming_k_per_decade: float = 0.5

    @model_validator(mode="after")
    def _years(self) -> SyntheticConfig:
        if self.hist_start_year > 2005:
            raise ValueError("hist_start_year must be <= 2005 (CMIP5 historical ends 2005-12)")
        if self.scenario_end_year < 2030:
            raise ValueError("scenario_end_year must be >= 2030")
        return self


class PerfectModelConfig(_Section):
    """The perfect-model experiment (synthetic mode): the synthetic world continued under each RCP is the truth.

    ``enabled``: ``auto`` runs it in synthetic mode and skips it with real files (no truth exists there);
    ``true`` with ``source.kind: files`` is an error. ``stride``: the pseudo-reality's soil runs on every ``stride``-th grid row and column (its cost falls
    with stride squared; README "Perfect model" gives how far the band means lie from the full grid's).
    """

    enabled: Literal["auto", True, False] = "auto"
    stride: int = Field(3, ge=1, le=8)


class StaticConfig(_Section):
    """Static per-band features: HWSD texture/carbon (real) and per-layer derivations."""

    oc_efold_depth_m: float = Field(0.5, gt=0.0)
    mineral_bulk_density_kg_m3: float = Field(1450.0, gt=500.0, lt=2700.0)


def _architectures(v: tuple[str, ...]) -> tuple[str, ...]:
    """``v`` if it lists known architectures, each once; else ValueError."""
    unknown = [a for a in v if a not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"unknown architecture(s) {unknown}; valid: {list(ARCHITECTURES)}")
    if not v or len(set(v)) != len(v):
        raise ValueError("architectures must list at least one architecture, each once")
    return v


class CellsConfig(_Section):
    """Grid cells as units (README "Grid cells"): the spatial hold-out and the cell models' training.

    The cells are grouped into blocks of ``holdout_block_deg`` (latitude, longitude) degrees, and whole blocks,
    drawn with the global ``seed``, are held out until at least ``holdout_share`` of the cells are: neighbouring
    cells share their weather, so single held-out cells would say little about cells a model never saw.

    A cell model is one network across every seen cell, which it tells apart by their attributes (statics and
    position), not by an id. Its epochs are samples of ``windows_per_epoch`` windows (hundreds of thousands of
    windows exist), in large batches; the rest of its training is ``training``'s.
    """

    holdout_share: float = Field(0.2, gt=0.0, lt=1.0)
    holdout_block_deg: tuple[float, float] = (2.0, 4.0)
    architectures: tuple[str, ...] = Field(("gru",), description="one `train-cells@<arch>` stage each")
    windows_per_epoch: int = Field(32768, ge=1, description="training windows drawn afresh for each epoch")
    validation_windows: int | None = Field(16384, ge=1, description=(
        "validation windows of the seen cells (a fixed sample drawn with `seed`; null: all of them)"))
    batch_size: int = Field(512, ge=1, le=65536)
    learning_rate: float | None = Field(None, gt=0.0, le=1.0, description=(
        "null: training.learning_rate scaled by sqrt(batch_size / training.batch_size)"))
    max_epochs: int = Field(20, ge=1, le=10000)
    patience: int = Field(5, ge=1)
    reference_years: YearRange = Field(YearRange(start_year=2014, end_year=2023), description=(
        "observed decade the cell products are also made for (truth and model), beside the scenario periods"))
    projection_periods: tuple[YearRange, ...] = Field(
        (YearRange(start_year=2024, end_year=2033), YearRange(start_year=2046, end_year=2055),
         YearRange(start_year=2091, end_year=2100)), description="periods of the per-cell projections and maps")
    ridge_windows: int = Field(20000, ge=1, description=(
        "training (and validation) windows of the seen cells the ridge baseline is fitted (and tuned) on"))
    projection_stride: int = Field(3, ge=1, le=100, description=(
        "project every n-th grid row and column of the cells (1: every cell; 3: one cell in 9, for 2 CPU cores)"))

    @field_validator("architectures")
    @classmethod
    def _known_architectures(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _architectures(v)

    @field_validator("projection_periods")
    @classmethod
    def _some_periods(cls, v: tuple[YearRange, ...]) -> tuple[YearRange, ...]:
        if not v or len({str(p) for p in v}) != len(v):
            raise ValueError("projection_periods must list at least one period, each once")
        return v

    def require(self, arch: str) -> None:
        """Raise :class:`ConfigError` unless ``arch`` is one of the cell architectures."""
        if arch not in self.architectures:
            raise ConfigError(f"architecture {arch!r} is not in cells.architectures {list(self.architectures)}")

    def training(self, base: TrainingConfig) -> TrainingConfig:
        """``base`` with the cell models' batch size, learning rate, epochs and patience."""
        lr = self.learning_rate or base.learning_rate * (self.batch_size / base.batch_size) ** 0.5
        if lr > 1.0:
            raise ConfigError(f"the cell models' learning rate {lr:.3g} (training.learning_rate scaled to"
                              f" cells.batch_size) is above 1: set cells.learning_rate")
        return base.model_copy(update={"batch_size": self.batch_size, "learning_rate": lr,
                                       "max_epochs": self.max_epochs, "patience": self.patience})

    @field_validator("holdout_block_deg")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if min(v) <= 0:
            raise ValueError(f"holdout_block_deg must be positive (latitude, longitude degrees), got {list(v)}")
        return v


class BiasCorrectionConfig(_Section):
    """Bias correction of the CMIP5 scenario inputs against ERA5-Land (``xsdba``).

    ``calibration`` years pair ERA5-Land with CMIP5 ``historical`` (to 2005) spliced with
    ``splice_experiment`` afterwards. It must not reach into the test years: the
    corrected inputs must not have seen the data the models are scored on.
    """

    method: str = "qdm"
    calibration: YearRange = YearRange(start_year=2001, end_year=2018)
    splice_experiment: str = "rcp45"
    nquantiles: int = Field(50, ge=2, le=1000)
    period_years: int = Field(10, ge=0, le=100)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in BIAS_METHODS:
            raise ValueError(f"unknown bias-correction method {v!r}; valid: {list(BIAS_METHODS)}")
        return v


class WindowsConfig(_Section):
    """Sliding windows and the chronological splits (by the month of the target)."""

    length_months: int = Field(24, ge=1, le=240)
    train: YearRange = YearRange(start_year=2001, end_year=2018)
    validation: YearRange = YearRange(start_year=2016, end_year=2018)
    test: YearRange = YearRange(start_year=2019, end_year=2023)

    @model_validator(mode="after")
    def _splits(self) -> WindowsConfig:
        if not self.validation.within(self.train) or self.validation.end_year != self.train.end_year:
            raise ValueError(f"validation {self.validation} must be the last years of train {self.train}")
        if self.validation.start_year <= self.train.start_year:
            raise ValueError(f"validation {self.validation} leaves no training years in {self.train}")
        if self.test.start_year <= self.train.end_year:
            raise ValueError(f"test {self.test} must start after train {self.train} ends")
        return self


class ModelsConfig(_Section):
    """Architectures' default hyper-parameters (tuning may override them) and the band embedding."""

    band_embedding_dim: int = Field(4, ge=1, le=64)
    tcn: TCNParams = TCNParams()
    transformer: TransformerParams = TransformerParams()
    conv_lstm: ConvLSTMParams = ConvLSTMParams()
    gru: GRUParams = GRUParams()
    bilstm: BiLSTMParams = BiLSTMParams()

    def hparams(self, name: str):
        if name not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {name!r}; valid: {list(ARCHITECTURES)}")
        return getattr(self, name)


class TrainingConfig(_Section):
    """How every architecture is trained (one generic LightningModule, see ``thawcast.learn.training``).

    Loss: MSE on the scaled targets; early stopping on the validation split's loss; the
    weights of the best validation epoch are kept. ``accelerator: auto`` uses a GPU when
    one is present and the CPU otherwise (same command, no code change).
    """

    architectures: tuple[str, ...] = ARCHITECTURES
    max_epochs: int = Field(80, ge=1, le=10000)
    batch_size: int = Field(64, ge=1, le=65536)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    patience: int = Field(10, ge=1)
    gradient_clip: float = Field(1.0, ge=0.0)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    deterministic: bool = True
    threads: int = Field(1, ge=1, le=256, description=(
        "torch intra-op CPU threads of one training run. 1 is the fastest for these small models here, and"
        " makes a run's bits independent of the machine's core count; parallelism comes from processes"
        " (compute.workers)"))
    devices: int = Field(1, ge=1, le=1024, description=(
        "devices one training run uses (Lightning's ``devices``): GPUs, or CPU processes with accelerator"
        " cpu. Above 1, data-parallel training (DDP): ``batch_size`` stays the global batch, split evenly"
        " over the devices. Tuning trials always run on one device"))
    strategy: Literal["auto", "ddp_spawn"] = Field("auto", description=(
        "Lightning strategy: ``auto`` = none on one device, DDP in spawned processes (``ddp_spawn``) on"
        " several. Lightning's plain ``ddp`` re-runs the command in each process, which would repeat a whole"
        " stage, so it is not offered"))

    @model_validator(mode="after")
    def _strategy_needs_devices(self) -> TrainingConfig:
        if self.strategy == "ddp_spawn" and self.devices == 1:
            raise ValueError("strategy ddp_spawn trains on several devices: set training.devices above 1, or"
                             " strategy auto")
        return self

    @property
    def distributed(self) -> bool:
        """Whether a run trains on several devices (DDP)."""
        return self.devices > 1

    def require(self, arch: str) -> None:
        """Raise :class:`ConfigError` unless ``arch`` is one of the trained architectures."""
        if arch not in self.architectures:
            raise ConfigError(f"architecture {arch!r} is not in training.architectures {list(self.architectures)}")

    @field_validator("architectures")
    @classmethod
    def _known_architectures(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _architectures(v)


#: URL schemes (before any ``+driver``) of the database servers MLflow and Optuna reach through SQLAlchemy.
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def _url_port(url: str) -> str:
    """``url`` unchanged, or ValueError naming a port that is not a number (the driver would raise a traceback
    from deep inside, or read it as part of the host)."""
    from urllib.parse import urlsplit

    try:
        _ = urlsplit(url).port  # parsed on access
    except ValueError:
        raise ValueError(f"{redacted(url)}: the port after host: must be a number") from None
    return url


class MlflowConfig(_Section):
    """Where runs, artifacts and registered models go (``thawcast.tracking.registry``).

    ``tracking_uri`` and ``artifacts`` are relative to the folder the command runs in
    (the repository root under ``dvc repro``). Registered models are named
    ``<model_prefix><architecture>``; ``alias`` marks the version the pipeline last produced.
    """

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifacts: Path = Path("mlruns/artifacts")
    experiment: str = Field("thawcast-training", min_length=1)
    model_prefix: str = Field("thawcast-", min_length=1)
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")

    @field_validator("tracking_uri")
    @classmethod
    def _store(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].split("+", 1)[0] if "://" in v else ""
        if scheme not in ("sqlite", "http", "https", *DATABASE_SCHEMES):
            raise ValueError(f"{redacted(v)!r} is not a store thawcast can use: give sqlite:///path/mlflow.db (local, the"
                             " default), http(s)://host:port (a tracking server) or a database URL (postgresql+"
                             "psycopg2://...); MLflow's file store (a folder, file://) is deprecated by"
                             " MLflow and not supported here")
        return _url_port(v)


#: Tunable names besides an architecture's own hyper-parameters.
TUNABLE_COMMON: tuple[str, ...] = ("learning_rate", "batch_size", "weight_decay", "band_embedding_dim")
_INT_COMMON = {"batch_size", "band_embedding_dim"}


class SearchDim(_Section):
    """One tunable: ``choices`` (categorical) or a ``low``..``high`` range (``log`` scale, ``step``)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[float | int | str, ...] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SearchDim:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give either choices or low/high (with log/step), not both")
            if not self.choices:
                raise ValueError("choices is empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs low and high (or choices)")
        if not self.high > self.low:
            raise ValueError(f"empty or inverted range: low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.step is not None and not self.step > 0:
            raise ValueError("step must be > 0")
        return self

    @property
    def values(self) -> tuple:
        """Every value this dimension can take that bounds checks need (choices, or the two ends)."""
        return self.choices if self.choices is not None else (self.low, self.high)


class TuningBudget(_Section):
    """What one study may spend: trials (complete + pruned) and wall time; epochs per trial."""

    n_trials: int = Field(12, ge=1, description="trials that count: complete or pruned")
    timeout_s: float = Field(300.0, gt=0.0)
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)

    @field_validator("n_trials", mode="before")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a budget of {v} trials tunes nothing; give n_trials >= 1")
        return v


def is_int_param(arch: str, name: str) -> bool:
    """Whether tunable ``name`` of ``arch`` takes integer values (sampled with ``suggest_int``)."""
    fields = HPARAMS[arch].model_fields
    return name in _INT_COMMON or (name in fields and fields[name].annotation is int)


def merged_space(space: dict[str, dict[str, SearchDim]], arch: str, where: str,
                 common: tuple[str, ...] = TUNABLE_COMMON) -> dict[str, SearchDim]:
    """``space``'s search space of ``arch``: its ``common`` entries, then its own (``where`` names the key in
    errors; ``common`` are the tunable names besides the architecture's hyper-parameters).

    Raises
    ------
    ValueError
        An unknown architecture or parameter, non-integer bounds of an integer parameter, or Transformer widths
        that the head counts do not divide.
    """
    unknown = [k for k in space if k != "common" and k not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"{where}: unknown architecture(s) {unknown}; valid: common, {', '.join(ARCHITECTURES)}")
    merged = {**space.get("common", {}), **space.get(arch, {})}
    fields = HPARAMS[arch].model_fields
    for name, dim in merged.items():
        if name not in fields and name not in common:
            raise ValueError(f"{where}.{arch}: unknown parameter {name!r}; valid: {', '.join([*fields, *common])}")
        if is_int_param(arch, name) and dim.choices is None and not all(float(v).is_integer() for v in dim.values):
            raise ValueError(f"{where}.{arch}.{name}: integer parameter needs integer bounds")
    if arch == "transformer":
        d, h = merged.get("d_model"), merged.get("heads")
        if (d is not None and d.choices is None) or (h is not None and h.choices is None):
            raise ValueError(f"{where}.transformer: give d_model and heads as choices (d_model % heads == 0)")
        ds = d.choices if d is not None else (TransformerParams().d_model,)
        hs = h.choices if h is not None else (TransformerParams().heads,)
        bad = [(a, b) for a in ds for b in hs if int(a) % int(b)]
        if bad:
            raise ValueError(f"{where}.transformer: d_model not divisible by heads for (d_model, heads) {bad}")
    return merged


#: Tunable names of a cell model besides its architecture's hyper-parameters (no unit embedding to size).
CELL_TUNABLE_COMMON: tuple[str, ...] = ("learning_rate", "batch_size", "weight_decay")


class CellTuning(_Section):
    """The cell models' studies (stage ``tune-cells``): their own budget and search space, on ``tuning``'s
    storage, sampler and pruner. The space's names are the architecture's hyper-parameters or
    :data:`CELL_TUNABLE_COMMON`; ``space.common`` applies to every cell architecture."""

    budget: TuningBudget = TuningBudget(n_trials=10, timeout_s=3600.0, max_epochs=10, patience=3)
    space: dict[str, dict[str, SearchDim]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _space(self) -> CellTuning:
        for arch in ARCHITECTURES:
            self.space_for(arch)
        return self

    def space_for(self, arch: str) -> dict[str, SearchDim]:
        return merged_space(self.space, arch, "tuning.cells.space", CELL_TUNABLE_COMMON)


class TuningConfig(_Section):
    """Optuna studies, one per architecture (``thawcast.learn.tuning``).

    ``space.common`` applies to every architecture; ``space.<arch>`` adds or overrides
    entries. Names are the architecture's hyper-parameters (``models.<arch>``) or one of
    :data:`TUNABLE_COMMON`.
    """

    budget: TuningBudget = TuningBudget()
    sampler_startup_trials: int = Field(5, ge=1)
    pruner_startup_trials: int = Field(3, ge=0)
    pruner_warmup_epochs: int = Field(5, ge=0)
    storage: str = Field("mlruns/optuna.journal", min_length=1, description=(
        "a file path (Optuna journal file: several processes may share it) or a database URL (sqlite:///...,"
        " postgresql://..., mysql+pymysql://...; SQLite takes one process at a time)"))
    workers: int = Field(1, ge=1, le=1024, description=(
        "processes that run trials of one study side by side; 1 draws the same trials on every rebuild, more"
        " finish sooner but which trials run then depends on timing"))
    heartbeat_s: int = Field(10, ge=1)
    grace_s: int = Field(30, ge=2)
    experiment: str = Field("thawcast-tuning", min_length=1)
    space: dict[str, dict[str, SearchDim]] = Field(default_factory=dict)
    cells: CellTuning = CellTuning()

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        return _url_port(v) if "://" in v else v

    @property
    def journal(self) -> bool:
        """Whether ``storage`` is a journal file (anything that is not a URL)."""
        return "://" not in self.storage

    @property
    def concurrent(self) -> bool:
        """Whether ``storage`` takes several writing processes at once (SQLite does not: Optuna's FAQ)."""
        return not self.storage.startswith("sqlite")

    @model_validator(mode="after")
    def _space(self) -> TuningConfig:
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(f"grace_s {self.grace_s} must exceed heartbeat_s {self.heartbeat_s}")
        if self.workers > 1 and not self.concurrent:
            raise ValueError(f"workers {self.workers} need a storage that takes concurrent writers, and SQLite"
                             f" ({self.storage}) does not (Optuna's FAQ): use a journal file (storage:"
                             " mlruns/optuna.journal) or a database server URL (postgresql://...)")
        for arch in ARCHITECTURES:
            self.space_for(arch)  # raises on unknown names / bad bounds
        return self

    def space_for(self, arch: str) -> dict[str, SearchDim]:
        """The merged search space of ``arch`` (common first, then its own entries)."""
        return merged_space(self.space, arch, "space")


class ExplainConfig(_Section):
    """SHAP attributions (``shap.GradientExplainer``, expected gradients) of the registered models."""

    background: int = Field(100, ge=1, description="training windows forming the background")
    samples: int = Field(60, ge=1, description="test windows explained")
    nsamples: int = Field(200, ge=1, description="gradient samples per explained window")
    top: int = Field(15, ge=1, description="features shown in the bar chart and beeswarm")


class RobustnessConfig(_Section):
    """Seed spread: how much of a difference between two single training runs is seed noise."""

    seeds: list[int] = Field([1, 2, 3], description="seeds trained besides `seed` (each model, defaults and tuned)")
    choose_by_validation: bool = Field(
        True, description="train registers an architecture's tuned settings only if their mean validation RMSE over"
                          " all seeds beats the defaults' (decided by the seed-spread stage; test years never used)")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"seeds must be distinct non-negative integers, got {v}")
        return v

    def all_seeds(self, seed: int) -> tuple[int, ...]:
        """``seed`` (the pipeline's, whose run is registered) first, then the others."""
        return (seed, *(s for s in self.seeds if s != seed))


class AblationConfig(_Section):
    """Stage feature-ablation: do these features earn their place among the model inputs? (README "Snow")"""

    features: tuple[str, ...] = Field(
        ("swe",), description="the features tested: every architecture trained with the defaults on every seed of"
                              " `robustness`, without and with them; scored on the validation years")

    @field_validator("features")
    @classmethod
    def _monthly(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in v if f not in FEATURES or FEATURES[f].kind == "signal"]
        if not v or bad or len(set(v)) != len(v):
            raise ValueError(f"features must be distinct monthly features (not the signal z), got {list(v)}")
        return v


class ComputeConfig(_Section):
    """Where the work runs. Results never depend on it, so no DVC stage lists it as a param."""

    workers: int | Literal["auto"] = Field(
        "auto", description="processes running independent jobs side by side: seed-spread's trainings, the tune"
                            " stage's studies, the explain stage's SHAP runs; auto = the CPU cores this process"
                            " may use")

    scheduler: str = Field(
        "threads", description="where dask computes the band means and the cell store: threads = dask's threads in"
                               " this process (fastest on one machine at these sizes, README 'Pipeline stages');"
                               " local = a dask.distributed LocalCluster of `workers` single-threaded processes on"
                               " this machine (localhost only); tcp://host:port (or tls://) = the scheduler of a"
                               " running cluster (dask-jobqueue, Kubernetes, `dask scheduler`)")

    @field_validator("workers")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if v != "auto" and v < 1:
            raise ValueError(f"workers must be 'auto' or at least 1, got {v}")
        return v

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v not in ("local", "threads") and not re.fullmatch(r"(tcp|tls|inproc|ucx)://\S+", v):
            raise ValueError(f"scheduler must be local, threads or a scheduler address such as"
                             f" tcp://10.0.0.5:8786, got {v!r}")
        return v

    @property
    def processes(self) -> int:
        """The worker processes this setting asks for (auto: the usable cores)."""
        return usable_cores() if self.workers == "auto" else self.workers

    def worker_count(self, tasks: int) -> int:
        """Processes to start for ``tasks`` independent jobs: never more than the jobs or (auto) the cores."""
        return max(1, min(self.processes, tasks))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, e.g. under a CPU quota)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Config(_Section):
    """The whole of ``params.yaml``."""

    seed: int = 42
    period: PeriodConfig = PeriodConfig()
    study_area: StudyAreaConfig = StudyAreaConfig()
    source: SourceConfig = SourceConfig()
    cmip5: Cmip5Config = Cmip5Config()
    synthetic: SyntheticConfig = SyntheticConfig()
    static: StaticConfig = StaticConfig()
    cells: CellsConfig = CellsConfig()
    bias_correction: BiasCorrectionConfig = BiasCorrectionConfig()
    projection: YearRange = YearRange(start_year=2024, end_year=2100)
    perfect_model: PerfectModelConfig = PerfectModelConfig()
    windows: WindowsConfig = WindowsConfig()
    features: tuple[str, ...] = ()
    models: ModelsConfig = ModelsConfig()
    training: TrainingConfig = TrainingConfig()
    tuning: TuningConfig = TuningConfig()
    explain: ExplainConfig = ExplainConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    ablation: AblationConfig = AblationConfig()
    mlflow: MlflowConfig = MlflowConfig()
    compute: ComputeConfig = ComputeConfig()

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in v if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; valid: {list(FEATURES)}")
        if len(set(v)) != len(v):
            raise ValueError("features are listed more than once")
        return v

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model inputs: ``features`` from params, or every known feature when empty."""
        return self.features or tuple(FEATURES)

    def ablation_variants(self) -> dict[str, tuple[str, ...]]:
        """The feature-ablation stage's two input sets: ``without`` = ``features`` less ``ablation.features``;
        ``with`` = those added after the last dynamic feature (the rest keep their order)."""
        tested = self.ablation.features
        without = tuple(f for f in self.feature_names if f not in tested)
        cut = max((i + 1 for i, f in enumerate(without) if FEATURES[f].kind == "dynamic"), default=0)
        return {"without": without, "with": without[:cut] + tested + without[cut:]}

    @property
    def perfect_model_on(self) -> bool:
        """Whether the pseudo-reality and perfect-model stages run (``perfect_model.enabled``)."""
        return self.perfect_model_off is None

    @property
    def perfect_model_off(self) -> str | None:
        """Why the pseudo-reality and perfect-model stages do not run, or None when they do."""
        if self.source.kind == "files":
            return "source.kind is files: real data have no pseudo-reality"
        return "perfect_model.enabled is false" if self.perfect_model.enabled is False else None

    @property
    def rcp_experiments(self) -> tuple[str, ...]:
        return tuple(e for e in self.cmip5.experiments if e != "historical")

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        w, bc = self.windows, self.bias_correction
        for name, rng in (("windows.train", w.train), ("windows.test", w.test),
                          ("bias_correction.calibration", bc.calibration)):
            if not rng.within(self.period):
                raise ValueError(f"{name} {rng} lies outside period {self.period}")
        if bc.calibration.overlaps(w.test):
            raise ValueError(f"bias_correction.calibration {bc.calibration} overlaps the test years {w.test}:"
                             " the corrected scenarios would have seen test-period observations")
        if bc.splice_experiment not in self.rcp_experiments:
            raise ValueError(f"bias_correction.splice_experiment {bc.splice_experiment!r} is not among"
                             f" cmip5.experiments {list(self.rcp_experiments)}")
        if self.projection.start_year <= self.period.end_year:
            raise ValueError(f"projection {self.projection} must start after period {self.period}")
        ref, lead = self.cells.reference_years, -(-self.windows.length_months // 12)
        if not ref.within(self.period) or ref.start_year < self.period.start_year + lead:
            raise ValueError(f"cells.reference_years {ref} must lie in period {self.period} and start {lead} year(s)"
                             f" after it: windows.length_months ({self.windows.length_months}) of inputs come first")
        if self.perfect_model_on and self.perfect_model.stride % self.cells.projection_stride:
            raise ValueError(f"cells.projection_stride {self.cells.projection_stride} does not divide"
                             f" perfect_model.stride {self.perfect_model.stride}: some pseudo-reality cells would not be"
                             " projected and scored")
        outside = [str(p) for p in self.cells.projection_periods if not p.within(self.projection)]
        if outside:
            raise ValueError(f"cells.projection_periods {outside} lie outside projection {self.projection}")
        if self.source.kind == "files" and self.perfect_model.enabled is True:
            raise ValueError("perfect_model.enabled is true but source.kind is files: the perfect-model experiment"
                             " needs the synthetic world's truth (set perfect_model.enabled to auto or false)")
        if self.source.kind == "synthetic":
            if self.period.start_year < self.synthetic.hist_start_year:
                raise ValueError(
                    f"period.start_year {self.period.start_year} is before the synthetic data start"
                    f" (synthetic.hist_start_year {self.synthetic.hist_start_year})"
                )
            if self.period.end_year > self.synthetic.scenario_end_year:
                raise ValueError("period.end_year is after synthetic.scenario_end_year")
            if self.projection.end_year > self.synthetic.scenario_end_year:
                raise ValueError(f"projection {self.projection} runs past synthetic.scenario_end_year"
                                 f" {self.synthetic.scenario_end_year}")
        return self


def parse_config(raw: dict | None) -> Config:
    """Validate a mapping (as read from YAML) into a :class:`Config`.

    Raises
    ------
    ConfigError
        Listing every bad or unknown key with its dotted location.
    """
    try:
        return Config.model_validate(raw or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{loc}: {msg}")
        raise ConfigError("invalid params:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(cfg: Config) -> dict:
    """JSON-ready dict of the resolved config (paths as strings)."""
    return cfg.model_dump(mode="json")


def with_overrides(cfg: Config, **sections: dict) -> Config:
    """``cfg`` with some keys of some sections replaced and validated again (a command-line flag over
    ``params.yaml``), e.g. ``with_overrides(cfg, tuning={"workers": 2})``."""
    raw = config_to_dict(cfg)
    for name, values in sections.items():
        raw[name] = {**raw[name], **values}
    return parse_config(raw)
