"""Stage ``evaluate``: every registered network and every baseline on the same test months.

Networks are loaded from the MLflow registry: the version holding the weights their train stage
recorded (``data/models/<arch>/registration.json``), so the scores are those of the artifact the
projections will use. Scores are in degC (un-scaled), overall, per band, per layer and per
band x layer, with the fractional RMSE reduction of each network against each baseline.

Outputs:

* ``metrics/evaluation.json`` (``dvc metrics show``) and ``metrics/evaluation.md``
  (the paper's Table 2 with the baselines added), both in git;
* ``data/evaluation/test_predictions.nc``: observed and predicted degC of every test window;
* ``data/evaluation/figures/``: observed vs predicted for the last test year per network
  (the paper's Figure 4) and test RMSE by model (bar chart).

Metrics and figures are also logged to each network's training run and to an
``evaluate`` run in the training experiment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.evaluation import (
    baseline_predictions,
    evaluation_markdown,
    evaluation_metrics,
    flat_scores,
)
from thawcast.analysis.plots import observed_vs_predicted, rmse_bars
from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.ingest.common import open_netcdf
from thawcast.layout import Layout
from thawcast.parallel import torch_threads
from thawcast.prep.windows import WindowSet, load_scalers, open_windows
from thawcast.quality.provenance import git_commit, is_synthetic, provenance, staged_output
from thawcast.tracking.registry import load_registration, read_registration, start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def network_predictions(cfg: Config, test: WindowSet, paths: Layout) -> tuple[dict[str, np.ndarray], dict]:
    """Test-window predictions of each registered network (the weights its train stage recorded)."""
    preds, regs = {}, {}
    for arch in cfg.training.architectures:
        reg = read_registration(paths.registration(arch), arch)
        model, mv = load_registration(reg)
        model.check_windows(test, reg.label)
        preds[arch] = model.predict_windows(test)
        regs[arch] = (reg, mv)
        log.info("%s: predicted %d test windows with %s (version %s)", arch, len(test), reg.label, mv.version)
    return preds, regs


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    train, val, test = (open_windows(paths.history, s) for s in ("train", "validation", "test"))
    with open_netcdf(paths.history) as ds:
        y_degc, synthetic = ds["y_degc"].values, is_synthetic(ds.attrs)
    obs = y_degc[test.band, test.last + 1].astype(float)
    if np.isnan(obs).any():
        raise DataError(paths.history, "observed test targets contain NaN")
    use_store(cfg.mlflow, create=False)
    with torch_threads(cfg.training.threads):  # the same bits on any core count (README "Reproducible to the byte")
        nets, regs = network_predictions(cfg, test, paths)
    bases, extra = baseline_predictions(cfg.windows, train, val, test, y_degc,
                                        load_scalers(paths.scaler)["targets"])
    preds = {**nets, **bases}
    names = cfg.study_area.band_labels[: test.x.shape[0]]
    networks = list(nets)
    metrics = evaluation_metrics(obs, preds, test.band, names, networks)
    metrics.update(test_years=str(cfg.windows.test), n_test_windows=len(test), **extra,
                   registered={a: reg.label for a, (reg, _) in regs.items()})
    for name in sorted(preds, key=lambda n: metrics["models"][n]["overall"]["rmse"]):
        t = metrics["models"][name]["overall"]
        log.info("%-21s test RMSE %.3f  MAE %.3f  R2 %.3f", name, t["rmse"], t["mae"], t["r2"])
    table = evaluation_markdown(metrics, networks, str(cfg.windows.test), len(test))

    last_year = cfg.windows.test.end_year
    months = pd.date_range(f"{last_year}-01-01", periods=12, freq="MS")
    with staged_output(paths.evaluation) as tmp:
        figs = tmp / "figures"
        fig_paths = {}
        for arch in networks:
            fig_paths[arch] = observed_vs_predicted(
                months, test.to_grid(obs, months), {arch: test.to_grid(nets[arch], months),
                                                    "climatology": test.to_grid(bases["climatology"], months)},
                names, TARGETS, f"{arch}: observed vs predicted soil temperature, {last_year} (test year)",
                figs / f"observed_vs_predicted_{arch}.png")
        bars = rmse_bars({n: metrics["models"][n]["overall"]["rmse"] for n in preds},
                         {n: "network" if n in networks else "baseline" for n in preds},
                         f"Test RMSE {cfg.windows.test}", figs / "rmse_by_model.png")
        ds = xr.Dataset(
            {"observed": (("window", "layer"), obs, {"units": "degC"}),
             "predicted": (("model", "window", "layer"), np.stack([preds[n] for n in preds]), {"units": "degC"}),
             "band": (("window",), test.band), "target_time": (("window",), test.target_times().values)},
            coords={"model": list(preds), "layer": list(TARGETS)},
            attrs=provenance("evaluate", "test-window predictions of registered networks and baselines",
                             str(paths.history), synthetic=synthetic,
                             registered_models=json.dumps(metrics["registered"])))
        ds.to_netcdf(tmp / paths.test_predictions.name)
    json_file, md_file = paths.metric("evaluation.json"), paths.metric("evaluation.md")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(metrics, indent=2) + "\n")
    md_file.write_text(f"# Test-period evaluation\n\n{table}")
    figs = paths.evaluation / "figures"
    for arch, (_, mv) in regs.items():
        with start_run(run_id=mv.run_id):
            mlflow.log_metrics(flat_scores("eval_test_", metrics["models"][arch]))
            mlflow.log_metrics({f"rmse_reduction_vs_{b}": v for b, v in metrics["rmse_reduction"][arch].items()})
            mlflow.log_artifact(str(figs / fig_paths[arch].name), "figures")
            mlflow.log_artifact(str(figs / bars.name), "figures")
    with start_run(run_name="evaluate", tags={"thawcast.stage": "evaluate", "git_commit": git_commit()}):
        for name in bases:
            mlflow.log_metrics(flat_scores(f"{name}_test_", metrics["models"][name]))
        mlflow.log_params({f"model.{a}": v for a, v in metrics["registered"].items()})
        mlflow.log_artifacts(str(figs), "figures")
        mlflow.log_params({f"version.{a}": mv.version for a, (_, mv) in regs.items()})
        mlflow.log_artifact(str(json_file))
        mlflow.log_artifact(str(md_file))
    return paths.evaluation
