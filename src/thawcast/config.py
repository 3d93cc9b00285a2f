"""Typed, strict configuration parsed once from ``params.yaml``.

Only the CLI reads YAML (:func:`load_config`); everything else receives the typed
sections. Unknown keys anywhere are an error, so a typo in ``params.yaml`` never
silently falls back to a default.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thawcast.errors import ConfigError

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

CMIP5_EXPERIMENTS: tuple[str, ...] = ("historical", "rcp26", "rcp45", "rcp60", "rcp85")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodConfig(_Section):
    """Years of observed (ERA5-Land) data the pipeline uses, inclusive."""

    start_year: int = 2001
    end_year: int = 2023

    @model_validator(mode="after")
    def _ordered(self) -> PeriodConfig:
        if self.end_year < self.start_year:
            raise ValueError(f"end_year {self.end_year} is before start_year {self.start_year}")
        return self

    @property
    def n_months(self) -> int:
        return 12 * (self.end_year - self.start_year + 1)


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


class SourceConfig(_Section):
    """Where raw data come from.

    ``synthetic`` generates the embedded synthetic Alaska; ``files`` ingests the user's
    downloaded ERA5-Land / CMIP5 NetCDF files from the two folders (and an optional
    rasterised lithology file).
    """

    kind: Literal["synthetic", "files"] = "synthetic"
    era5land_dir: Path = Path("data/external/era5land")
    cmip5_dir: Path = Path("data/external/cmip5")
    lithology_file: Path | None = None


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
    """The embedded synthetic Alaska (see ``thawcast.synthetic``)."""

    resolution_deg: float = Field(0.25, gt=0.0, le=2.0)
    hist_start_year: int = 1996
    scenario_end_year: int = 2030
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


class StaticConfig(_Section):
    """Static per-band features: HWSD texture/carbon (real) and per-layer derivations."""

    oc_efold_depth_m: float = Field(0.5, gt=0.0)
    mineral_bulk_density_kg_m3: float = Field(1450.0, gt=500.0, lt=2700.0)


class Config(_Section):
    """The whole of ``params.yaml``."""

    seed: int = 42
    period: PeriodConfig = PeriodConfig()
    study_area: StudyAreaConfig = StudyAreaConfig()
    source: SourceConfig = SourceConfig()
    cmip5: Cmip5Config = Cmip5Config()
    synthetic: SyntheticConfig = SyntheticConfig()
    static: StaticConfig = StaticConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.source.kind == "synthetic":
            if self.period.start_year < self.synthetic.hist_start_year:
                raise ValueError(
                    f"period.start_year {self.period.start_year} is before the synthetic data start"
                    f" (synthetic.hist_start_year {self.synthetic.hist_start_year})"
                )
            if self.period.end_year > self.synthetic.scenario_end_year:
                raise ValueError("period.end_year is after synthetic.scenario_end_year")
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
