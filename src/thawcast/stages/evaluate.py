"""Stage ``evaluate``: every registered network and every baseline on the same test months.

Networks are loaded from the MLflow registry at the version their train stage recorded
(``data/models/<arch>/registration.json``), so the scores are those of the artifact the
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

from thawcast.baselines import (
    RidgeBaseline,
    climatology_table,
    predict_climatology,
    predict_persistence,
    predict_seasonal_persistence,
)
from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.metrics import fractional_reduction, skill_table
from thawcast.plots import observed_vs_predicted, rmse_bars
from thawcast.provenance import git_commit, is_synthetic, provenance, staged_output
from thawcast.readers.common import open_netcdf
from thawcast.stages.train import read_registration
from thawcast.stages.windows import HISTORY_FILE, SCALER_FILE
from thawcast.tracking import load_registered, use_store
from thawcast.variables import TARGETS
from thawcast.windows import WindowSet, fit_months, load_scalers, open_windows

log = logging.getLogger(__name__)

BASELINES = ("climatology", "persistence", "seasonal_persistence", "ridge")
METRICS_FILE = "evaluation.json"
TABLE_FILE = "evaluation.md"
PREDICTIONS_FILE = "test_predictions.nc"


def baseline_predictions(cfg: Config, windows_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Test-window predictions (degC ``[N, 4]``) of every baseline, fitted without test data.

    Climatology uses the training-split months (those the scaler saw), ridge is fitted on
    the training split with its alpha chosen on validation.
    """
    path = windows_dir / HISTORY_FILE
    train, val, test = (open_windows(path, s) for s in ("train", "validation", "test"))
    with open_netcdf(path) as ds:
        y_degc = ds["y_degc"].values
    targets = load_scalers(windows_dir / SCALER_FILE)["targets"]
    months = test.times.month.to_numpy()
    table = climatology_table(y_degc, months, fit_months(test.times, cfg.windows))
    ridge = RidgeBaseline().fit(train, val)
    preds = {
        "climatology": predict_climatology(table, test),
        "persistence": predict_persistence(y_degc, test),
        "seasonal_persistence": predict_seasonal_persistence(y_degc, test),
        "ridge": targets.inverse(ridge.predict(test)),
    }
    return preds, {"ridge_alpha": ridge.alpha}


def network_predictions(cfg: Config, test: WindowSet, models_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Test-window predictions of each registered network (the version its train stage recorded)."""
    preds, regs = {}, {}
    for arch in cfg.training.architectures:
        reg = read_registration(models_dir, arch)
        model, _ = load_registered(reg.registered_model, version=reg.version)
        model.check_windows(test, f"{reg.registered_model} v{reg.version}")
        preds[arch] = model.predict_windows(test)
        regs[arch] = reg
        log.info("%s: predicted %d test windows with %s version %s", arch, len(test), reg.registered_model,
                 reg.version)
    return preds, regs


def evaluation_metrics(obs: np.ndarray, preds: dict[str, np.ndarray], band: np.ndarray, band_names: list[str],
                       networks: list[str]) -> dict:
    """Skill tables of every model and the fractional RMSE reduction of each network vs each baseline."""
    tables = {name: skill_table(obs, p, band, TARGETS, band_names) for name, p in preds.items()}
    reduction = {net: {base: fractional_reduction(tables[net]["overall"]["rmse"], tables[base]["overall"]["rmse"])
                       for base in preds if base not in networks} for net in networks}
    best_net = min(networks, key=lambda n: tables[n]["overall"]["rmse"])
    best_base = min((n for n in preds if n not in networks), key=lambda n: tables[n]["overall"]["rmse"])
    return {"models": tables, "rmse_reduction": reduction, "best_network": best_net, "best_baseline": best_base,
            "best_network_beats_climatology": bool(tables[best_net]["overall"]["rmse"]
                                                   < tables["climatology"]["overall"]["rmse"])}


def markdown_table(metrics: dict, networks: list[str], test_years: str, n_windows: int) -> str:
    """Table 2 of the paper, with the baselines and the fractional RMSE reductions added."""
    tables, red = metrics["models"], metrics["rmse_reduction"]
    baselines = [n for n in tables if n not in networks]
    head = ["model", "kind", "RMSE", "MAE", "R2", *[f"RMSE {t}" for t in TARGETS],
            *[f"vs {b}" for b in baselines]]
    lines = [(f"Test years {test_years}, {n_windows} windows (all bands), degC. 'vs X' = fractional RMSE"
              " reduction 1 - RMSE/RMSE_X (positive: the network is better)."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(tables, key=lambda n: (n not in networks, tables[n]["overall"]["rmse"])):
        t = tables[name]
        row = [name, "network" if name in networks else "baseline",
               *(f"{t['overall'][k]:.3f}" for k in ("rmse", "mae", "r2")),
               *(f"{t['per_layer'][lay]['rmse']:.3f}" for lay in TARGETS),
               *((f"{red[name][b]:+.1%}" for b in baselines) if name in networks else ("" for _ in baselines))]
        lines.append("| " + " | ".join(row) + " |")
    bands = list(next(iter(tables.values()))["per_band"])
    lines += ["", "RMSE per band (degC, all layers):", "", "| model | " + " | ".join(bands) + " |",
              "|" + "---|" * (len(bands) + 1)]
    for name in sorted(tables, key=lambda n: (n not in networks, tables[n]["overall"]["rmse"])):
        lines.append(f"| {name} | " + " | ".join(f"{tables[name]['per_band'][b]['rmse']:.3f}" for b in bands) + " |")
    verdict = ("beats" if metrics["best_network_beats_climatology"] else "does NOT beat")
    lines += ["", (f"Best network: **{metrics['best_network']}**; it {verdict} the climatology baseline."
                   f" Best baseline: {metrics['best_baseline']}."), ""]
    return "\n".join(lines)


def _grid(values: np.ndarray, ws: WindowSet, times: pd.DatetimeIndex) -> np.ndarray:
    """Scatter ``[N, layer]`` window values onto a ``[band, len(times), layer]`` grid (NaN elsewhere)."""
    out = np.full((ws.x.shape[0], len(times), values.shape[1]), np.nan)
    pos = times.get_indexer(ws.target_times())
    keep = pos >= 0
    out[ws.band[keep], pos[keep]] = values[keep]
    return out


def _flat(prefix: str, table: dict) -> dict[str, float]:
    out = {f"{prefix}{k}": v for k, v in table["overall"].items()}
    for group in ("per_layer", "per_band"):
        for key, sc in table[group].items():
            out.update({f"{prefix}{k}_{key.replace('.', 'p')}": v for k, v in sc.items()})
    return out


def run(cfg: Config, windows_dir: Path = Path("data/windows"), models_dir: Path = Path("data/models"),
        out_dir: Path = Path("data/evaluation"), metrics_dir: Path = Path("metrics")) -> Path:
    import mlflow

    test = open_windows(windows_dir / HISTORY_FILE, "test")
    with open_netcdf(windows_dir / HISTORY_FILE) as ds:
        y_degc, synthetic = ds["y_degc"].values, is_synthetic(ds.attrs)
    obs = y_degc[test.band, test.last + 1].astype(float)
    if np.isnan(obs).any():
        raise DataError(windows_dir / HISTORY_FILE, "observed test targets contain NaN")
    use_store(cfg.mlflow)
    nets, regs = network_predictions(cfg, test, models_dir)
    bases, extra = baseline_predictions(cfg, windows_dir)
    preds = {**nets, **bases}
    names = cfg.study_area.band_labels[: test.x.shape[0]]
    networks = list(nets)
    metrics = evaluation_metrics(obs, preds, test.band, names, networks)
    metrics.update(test_years=str(cfg.windows.test), n_test_windows=len(test), **extra,
                   registered={a: f"{r.registered_model}/{r.version}" for a, r in regs.items()})
    for name in sorted(preds, key=lambda n: metrics["models"][n]["overall"]["rmse"]):
        t = metrics["models"][name]["overall"]
        log.info("%-21s test RMSE %.3f  MAE %.3f  R2 %.3f", name, t["rmse"], t["mae"], t["r2"])
    table = markdown_table(metrics, networks, str(cfg.windows.test), len(test))

    last_year = cfg.windows.test.end_year
    months = pd.date_range(f"{last_year}-01-01", periods=12, freq="MS")
    with staged_output(out_dir) as tmp:
        figs = tmp / "figures"
        fig_paths = {}
        for arch in networks:
            fig_paths[arch] = observed_vs_predicted(
                months, _grid(obs, test, months), {arch: _grid(nets[arch], test, months),
                                                    "climatology": _grid(bases["climatology"], test, months)},
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
                             str(windows_dir / HISTORY_FILE), synthetic=synthetic,
                             registered_models=json.dumps(metrics["registered"])))
        ds.to_netcdf(tmp / PREDICTIONS_FILE)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (metrics_dir / TABLE_FILE).write_text(f"# Test-period evaluation\n\n{table}")
    figs = out_dir / "figures"
    for arch, reg in regs.items():
        with mlflow.start_run(run_id=reg.run_id):
            mlflow.log_metrics(_flat("eval_test_", metrics["models"][arch]))
            mlflow.log_metrics({f"rmse_reduction_vs_{b}": v for b, v in metrics["rmse_reduction"][arch].items()})
            mlflow.log_artifact(str(figs / fig_paths[arch].name), "figures")
            mlflow.log_artifact(str(figs / bars.name), "figures")
    with mlflow.start_run(run_name="evaluate", tags={"thawcast.stage": "evaluate", "git_commit": git_commit()}):
        for name in bases:
            mlflow.log_metrics(_flat(f"{name}_test_", metrics["models"][name]))
        mlflow.log_params({f"model.{a}": v for a, v in metrics["registered"].items()})
        mlflow.log_artifacts(str(figs), "figures")
        mlflow.log_artifact(str(metrics_dir / METRICS_FILE))
        mlflow.log_artifact(str(metrics_dir / TABLE_FILE))
    return out_dir
