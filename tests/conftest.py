"""Shared fixtures: a tiny synthetic world built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thawcast.config import Config, parse_config
from thawcast.layout import STAGE_DIRS, Layout

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "expectations"
REAL_ERA5 = REPO / "tests" / "data" / "era5_monthly_healy_2010-2019.nc"

TINY = {
    "seed": 7,
    "period": {"start_year": 2001, "end_year": 2003},
    "synthetic": {"resolution_deg": 1.0, "hist_start_year": 2001, "scenario_end_year": 2030,
                  "spinup_years": 2, "soil_dt_days": 5.0},
    "bias_correction": {"calibration": {"start_year": 2001, "end_year": 2002}, "nquantiles": 5},
    "projection": {"start_year": 2024, "end_year": 2030},
    "windows": {"length_months": 6, "train": {"start_year": 2001, "end_year": 2002},
                "validation": {"start_year": 2002, "end_year": 2002},
                "test": {"start_year": 2003, "end_year": 2003}},
    "models": {"band_embedding_dim": 2, "tcn": {"channels": 8, "levels": 2},
               "transformer": {"d_model": 8, "heads": 2, "layers": 1, "ff_dim": 16},
               "conv_lstm": {"filters": 8, "hidden": 8}, "gru": {"hidden": 8, "layers": 1},
               "bilstm": {"hidden": 8}},
    "training": {"max_epochs": 3, "batch_size": 32, "patience": 2, "accelerator": "cpu"},
    "tuning": {"budget": {"n_trials": 2, "timeout_s": 120, "max_epochs": 2, "patience": 2},
               "sampler_startup_trials": 1, "pruner_startup_trials": 1, "pruner_warmup_epochs": 1,
               "space": {"common": {"learning_rate": {"low": 0.001, "high": 0.02, "log": True}}},
               "cells": {"budget": {"n_trials": 3, "timeout_s": 120, "max_epochs": 2, "patience": 2},
                         "space": {"common": {"learning_rate": {"low": 0.001, "high": 0.02, "log": True}},
                                   "gru": {"hidden": {"choices": [4, 8]}}}}},
    "robustness": {"seeds": [1]},
    "cells": {"windows_per_epoch": 256, "validation_windows": 128, "batch_size": 32, "max_epochs": 2, "patience": 2,
              "reference_years": {"start_year": 2002, "end_year": 2003}, "projection_stride": 3,
              "projection_periods": [{"start_year": 2024, "end_year": 2025}, {"start_year": 2029, "end_year": 2030}]},
}


def layout(root: Path, **folders: Path) -> Layout:
    """The tests' flat tree: every stage folder at ``root/<stage>`` (not ``root/data/<stage>``), metrics at
    ``root/metrics``, the lock at ``root/dvc.lock``, validation reports at ``root/reports``, and the committed
    suites; ``folders`` point single folders elsewhere (e.g. ``windows=`` another root's)."""
    root = Path(root)
    flat = Layout.at(root).replace(**{name: root / name for name in STAGE_DIRS}, expectations=SUITES,
                                   validation_reports=root / "reports")
    return flat.replace(**folders)


@pytest.fixture(scope="session")
def tiny_cfg() -> Config:
    return parse_config(TINY)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory, tiny_cfg):
    """Run the raw, static and bands stages once on the tiny config; return the folders."""
    from thawcast.stages import bands, raw, static

    root = tmp_path_factory.mktemp("world")
    paths = layout(root)
    raw.run(tiny_cfg, paths)
    static.run(tiny_cfg, paths)
    bands.run(tiny_cfg, paths)
    return root


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_world, tiny_cfg):
    """The tiny world plus the scenarios and windows stages; returns the root folder."""
    from thawcast.stages import scenarios, windows

    root = tiny_world
    paths = layout(root)
    scenarios.run(tiny_cfg, paths)
    windows.run(tiny_cfg, paths)
    return root


#: Architectures the session's tiny trained models cover.
TRAINED_ARCHS = ("gru", "tcn")


@pytest.fixture(scope="session")
def trained(tiny_pipeline, tmp_path_factory):
    """Two architectures trained and registered in a session-private MLflow store; evaluate run once.

    Returns ``(cfg, root, world)``: the config pointing at that store, the folder holding
    ``models/``, ``evaluation/``, ``metrics/``, and the tiny world.
    """
    from thawcast.config import MlflowConfig
    from thawcast.stages import evaluate, train

    root = tmp_path_factory.mktemp("mlflow")
    store = MlflowConfig(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifacts=root / "artifacts")
    cfg = parse_config({**TINY, "training": {**TINY["training"], "architectures": list(TRAINED_ARCHS)},
                        "mlflow": {"tracking_uri": store.tracking_uri, "artifacts": str(store.artifacts)}})
    paths = layout(root, windows=tiny_pipeline / "windows")
    paths.lock.write_text(f"schema: '2.0'\nstages:\n  windows:\n    outs:\n    - path: {paths.windows}\n"
                          "      md5: abc123.dir\n")
    for arch in TRAINED_ARCHS:
        train.run(cfg, arch, paths)
    evaluate.run(cfg, paths)
    return cfg, root, tiny_pipeline


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


#: Session fixtures that build the tiny world through the stages (about a minute); tests that use them are
#: marked ``world``, so that ``make mutate`` can run only the unit tests, which build their inputs in place.
WORLD_FIXTURES = frozenset({"tiny_world", "tiny_pipeline", "trained"})


#: Test files that take minutes: collected first, so that with ``make test``'s two pytest-xdist workers one of
#: them starts on them while the other works through the rest (collected last they set the run's length).
SLOWEST_FIRST = ("tests/test_dvc_pipeline.py",)


def pytest_collection_modifyitems(items):
    for item in items:
        if WORLD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.world)
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in SLOWEST_FIRST)  # stable: the rest keep their order
