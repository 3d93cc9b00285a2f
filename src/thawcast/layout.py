"""Where every stage's inputs and outputs live: the one file layout of the pipeline.

``dvc.yaml`` names the same folders and files (a test checks that its ``outs`` are exactly
the ones listed here); stages receive a :class:`Layout` instead of writing paths themselves.
``Layout.at(root)`` places the whole tree under ``root`` (the repository root under
``dvc repro``, a temporary folder in tests); ``layout.replace(windows=...)`` points one
stage's folder elsewhere.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

#: Stage output folders under ``data/``, in pipeline order.
STAGE_DIRS: tuple[str, ...] = ("raw", "static", "cells", "bands", "scenarios", "windows", "tuning", "models", "evaluation",
                               "cell_models", "cell_evaluation", "cell_projections", "cell_explain", "projections", "thaw", "explain", "pseudo_reality",
                               "perfect_model", "report")


@dataclass(frozen=True)
class Layout:
    """Folders of every stage (``data/<stage>``), metrics, suites, validation reports and the DVC lock."""

    raw: Path
    static: Path
    cells: Path
    bands: Path
    scenarios: Path
    windows: Path
    tuning: Path
    models: Path
    evaluation: Path
    cell_models: Path
    cell_evaluation: Path
    cell_projections: Path
    cell_explain: Path
    projections: Path
    thaw: Path
    explain: Path
    pseudo_reality: Path
    perfect_model: Path
    report: Path
    metrics: Path
    expectations: Path
    validation_reports: Path
    lock: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Layout:
        root = Path(root)
        return cls(**{name: root / "data" / name for name in STAGE_DIRS}, metrics=root / "metrics",
                   expectations=root / "expectations", validation_reports=root / "reports" / "validation",
                   lock=root / "dvc.lock")

    def replace(self, **folders: str | Path) -> Layout:
        return dataclasses.replace(self, **{k: Path(v) for k, v in folders.items()})

    # -- files ---------------------------------------------------------------------------------
    @property
    def soil_state(self) -> Path:
        """The synthetic soil columns at the end of the record (raw stage, synthetic mode only)."""
        return self.raw / "soil_state.nc"

    @property
    def geopotential(self) -> Path:
        """ERA5-Land's invariant surface geopotential (raw stage: synthetic, or ``source.geopotential_file``)."""
        return self.raw / "static" / "era5land_geopotential.nc"

    def pseudo_truth(self, rcp: str) -> Path:
        """The synthetic world continued under one RCP, as ERA5-Land files (pseudo-reality stage)."""
        return self.pseudo_reality / rcp

    def pseudo_bands(self, rcp: str | None = None) -> Path:
        """Band means of one RCP's pseudo-reality, or (``None``) of the observed record over the same cells."""
        return self.pseudo_reality / f"bands_{rcp or 'observed'}.nc"

    @property
    def era5_bands(self) -> Path:
        """ERA5-Land band means ``(band, time)`` (bands stage)."""
        return self.bands / "era5land_bands.nc"

    def cmip5_bands(self, experiment: str) -> Path:
        """CMIP5 band means of one experiment (bands stage)."""
        return self.bands / f"cmip5_{experiment}.nc"

    @property
    def static_table(self) -> Path:
        """Static per-band features (static stage)."""
        return self.static / "static_bands.nc"

    @property
    def cell_store(self) -> Path:
        """The land cells' ``[cell, time, variable]`` drivers and soil temperatures (cells stage)."""
        return self.cells / "cells.nc"

    @property
    def static_cells(self) -> Path:
        """Static features per land cell (cells stage)."""
        return self.cells / "static_cells.nc"

    def scenario(self, rcp: str) -> Path:
        """Bias-corrected inputs of one RCP (scenarios stage)."""
        return self.scenarios / f"{rcp}.nc"

    @property
    def moisture_split(self) -> Path:
        return self.scenarios / "moisture_split.nc"

    def adjustment(self, method: str, variable: str) -> Path:
        """A fitted xsdba adjustment's dataset (scenarios stage)."""
        return self.scenarios / "adjustments" / f"{method}_{variable}.nc"

    @property
    def history(self) -> Path:
        """ERA5-Land windows of the train/validation/test splits (windows stage)."""
        return self.windows / "history.nc"

    def scenario_windows(self, rcp: str) -> Path:
        return self.windows / f"{rcp}.nc"

    @property
    def scaler(self) -> Path:
        return self.windows / "scaler.json"

    def study(self, arch: str) -> Path:
        """One architecture's tuning outputs (tune stage)."""
        return self.tuning / arch

    def best_params(self, arch: str) -> Path:
        return self.study(arch) / "best_params.json"

    def study_summary(self, arch: str) -> Path:
        return self.study(arch) / "summary.json"

    def model(self, arch: str) -> Path:
        """One architecture's train outputs (train stage)."""
        return self.models / arch

    def registration(self, arch: str) -> Path:
        return self.model(arch) / "registration.json"

    def cell_model(self, arch: str) -> Path:
        """One architecture's cell-model outputs (train-cells stage)."""
        return self.cell_models / arch

    def cell_registration(self, arch: str) -> Path:
        return self.cell_model(arch) / "registration.json"

    @property
    def cell_scores(self) -> Path:
        """Per-cell test scores of every cell model and baseline (evaluate-cells stage)."""
        return self.cell_evaluation / "cell_scores.nc"

    @property
    def cell_projection_file(self) -> Path:
        """Per-cell projected soil temperature, ALT and permafrost on the lat/lon grid (project-cells stage)."""
        return self.cell_projections / "cell_projections.nc"

    @property
    def test_predictions(self) -> Path:
        return self.evaluation / "test_predictions.nc"

    @property
    def projections_file(self) -> Path:
        return self.projections / "projections.nc"

    def explanation(self, arch: str) -> Path:
        return self.explain / arch

    def top_features(self, arch: str) -> Path:
        return self.explanation(arch) / "top_features.json"

    @property
    def report_page(self) -> Path:
        return self.report / "index.html"

    def metric(self, name: str) -> Path:
        """``metrics/<name>`` (git-tracked JSON metrics and Markdown tables)."""
        return self.metrics / name


#: Git-tracked metrics and tables each stage writes (``dvc.yaml`` lists them as metrics or outs).
METRIC_FILES: dict[str, tuple[str, ...]] = {
    "bands": ("bands.json",),
    "scenarios": ("scenario_spread.json",),
    "compare-studies": ("tuning.json", "tuning.md"),
    "seed-spread": ("seed_spread.json", "seed_spread.md"),
    "tune-cells": ("cell_tuning.json", "cell_tuning.md"),
    "seed-spread-cells": ("cell_seed_spread.json", "cell_seed_spread.md"),
    "evaluate-cells": ("cells.json", "cells.md"),
    "project-cells": ("cell_projections.json", "cell_projections.md"),
    "explain-cells": ("cell_shap.json", "cell_shap.md"),
    "feature-ablation": ("feature_ablation.json", "feature_ablation.md"),
    "evaluate": ("evaluation.json", "evaluation.md"),
    "project": ("projection_period.json", "extrapolation.json", "extrapolation.md"),
    "thaw": ("thaw.json", "thaw_decades.json", "thaw.md"),
    "compare-explanations": ("shap.json", "shap.md"),
    "perfect-model": ("perfect_model.json", "perfect_model.md"),
}

#: The ``data/`` folder each stage writes (per-architecture stages: one sub-folder per architecture).
STAGE_OUTPUT: dict[str, str | None] = {
    "raw": "raw", "static": "static", "bands": "bands", "scenarios": "scenarios", "windows": "windows",
    "tune": "tuning", "compare-studies": None, "seed-spread": None, "feature-ablation": None, "train": "models",
    "evaluate": "evaluation", "tune-cells": None, "seed-spread-cells": None,
    "project": "projections", "thaw": "thaw", "explain": "explain", "compare-explanations": None,
    "train-cells": "cell_models", "evaluate-cells": "cell_evaluation", "project-cells": "cell_projections",
    "explain-cells": "cell_explain",
    "pseudo-reality": "pseudo_reality", "perfect-model": "perfect_model", "report": "report",
}


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative/path.db`` made absolute (its folder created); other URLs unchanged."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        db = Path(url[len(prefix):]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        url = prefix + str(db)
    return url


#: What to do when a database URL's driver is missing: the one ``.[team]`` installs, named in the URL (a bare
#: ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1).
POSTGRES_DRIVER = "for PostgreSQL write postgresql+psycopg2://... and pip install -e '.[team]'"

#: Seconds a database driver may take to connect (:func:`connect_args`).
CONNECT_TIMEOUT_S = 10


def connect_args(url: str) -> dict:
    """Driver options for a database URL: a connect timeout for PostgreSQL and MySQL, whose drivers otherwise
    wait as long as the operating system does (minutes, for a host that drops packets); none for others."""
    return {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith(("postgresql", "mysql")) else {}


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``postgresql://user:***@host/db``), for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)
