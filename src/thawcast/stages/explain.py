"""Stage ``explain@<arch>``: SHAP attributions of the registered model ``thawcast-<arch>@champion``.

Background: ``explain.background`` training windows (drawn with ``seed``, stratified by
band); explained: ``explain.samples`` test windows. Attribution per feature is summed over
the window's months (degC), then aggregated over bands and layers, and per layer.

Outputs (``data/explain/<arch>/``): ``shap_values.nc`` (window x feature x layer, with the
window-mean feature values, bands and target months), ``importance.csv`` (mean |SHAP| per
feature, overall and per layer), ``top_features.json``, ``figures/shap_bar.png`` and
``figures/shap_beeswarm.png``. All are logged to the registered version's training run
(under ``shap/``), and an ``explain-<arch>`` run records which version was explained.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from thawcast.config import Config
from thawcast.explain import BandFixed, attributions, importance, plots
from thawcast.provenance import git_commit, is_synthetic, provenance, staged_output
from thawcast.readers.common import open_netcdf
from thawcast.stages.windows import HISTORY_FILE
from thawcast.tracking import load_registered, registered_name, use_store
from thawcast.variables import TARGETS
from thawcast.windows import WindowSet, open_windows

log = logging.getLogger(__name__)

TOP_FILE = "top_features.json"


def stratified(ws: WindowSet, n: int, rng: np.random.Generator) -> np.ndarray:
    """About ``n`` window indices spread evenly over the bands (sorted)."""
    bands = np.unique(ws.band)
    per = max(1, -(-n // len(bands)))
    picks = [rng.choice(np.flatnonzero(ws.band == b), min(per, int((ws.band == b).sum())), replace=False)
             for b in bands]
    return np.sort(np.concatenate(picks))


def additivity_gap(model, sv: np.ndarray, bg: np.ndarray, bg_band: np.ndarray, x: np.ndarray,
                   band: np.ndarray) -> float:
    """Mean |f(x) - E[f(background of its band)] - sum of attributions| (degC): how exact the SHAP sums are."""
    gaps = []
    with torch.no_grad():
        for b in np.unique(band):
            f = BandFixed(model, int(b))
            base = f(torch.as_tensor(bg[bg_band == b], dtype=torch.float32)).numpy().mean(axis=0)
            fx = f(torch.as_tensor(x[band == b], dtype=torch.float32)).numpy()
            gaps.append(np.abs(fx - base - sv[band == b].sum(axis=1)))
    return float(np.mean(np.concatenate(gaps)))


def run(cfg: Config, arch: str, windows_dir: Path = Path("data/windows"), out_dir: Path = Path("data/explain"),
        ) -> Path:
    import mlflow

    cfg.training.require(arch)
    e = cfg.explain
    use_store(cfg.mlflow)
    name = registered_name(cfg.mlflow, arch)
    model, mv = load_registered(name, alias=cfg.mlflow.alias)
    history = windows_dir / HISTORY_FILE
    train, test = open_windows(history, "train"), open_windows(history, "test")
    model.check_windows(test, f"{name} v{mv.version}")
    with open_netcdf(history) as ds:
        synthetic = is_synthetic(ds.attrs)
    rng = np.random.default_rng(cfg.seed)
    bi, si = stratified(train, e.background, rng), stratified(test, e.samples, rng)
    bg, x = train.inputs(bi), test.inputs(si)
    log.info("%s: explaining %d test windows against %d training windows (%d gradient samples each)", arch,
             len(si), len(bi), e.nsamples)
    sv = attributions(model, bg, train.band[bi], x, test.band[si], e.nsamples, cfg.seed)
    features = list(test.feature_names)
    imp = importance(sv, features, TARGETS)
    gap = additivity_gap(model, sv, bg, train.band[bi], x, test.band[si])
    top = {"architecture": arch, "registered_model": name, "version": str(mv.version), "run_id": mv.run_id,
           "n_background": len(bi), "n_explained": len(si), "additivity_gap_degc": gap,
           "top": [{"feature": f, "mean_abs_shap_degc": float(v)} for f, v in imp["all"].head(e.top).items()],
           "top_per_layer": {lay: imp[lay].sort_values(ascending=False).head(5).index.tolist() for lay in TARGETS}}
    log.info("%s: top features %s (additivity gap %.3f degC)", arch,
             ", ".join(f"{t['feature']} {t['mean_abs_shap_degc']:.3f}" for t in top["top"][:5]), gap)
    with staged_output(out_dir / arch) as tmp:
        ds = xr.Dataset(
            {"shap": (("window", "feature", "layer"), sv,
                      {"units": "degC", "long_name": "SHAP attribution summed over the window's months"}),
             "feature_value": (("window", "feature"), x.mean(axis=1),
                               {"long_name": "window-mean scaled feature value"}),
             "band": (("window",), test.band[si]), "target_time": (("window",), test.target_times(si).values)},
            coords={"feature": features, "layer": list(TARGETS)},
            attrs=provenance("explain", f"shap.GradientExplainer on {name} version {mv.version}", str(history),
                             synthetic=synthetic, registered_model=name, model_version=str(mv.version),
                             model_run_id=mv.run_id, nsamples=e.nsamples))
        ds.to_netcdf(tmp / "shap_values.nc")
        imp.to_csv(tmp / "importance.csv")
        (tmp / TOP_FILE).write_text(json.dumps(top, indent=2) + "\n")
        figs = plots(sv, x.mean(axis=1), features, imp, f"{arch} ({name} v{mv.version}): SHAP on test windows",
                     tmp / "figures", e.top)
    final = out_dir / arch
    with mlflow.start_run(run_id=mv.run_id):
        mlflow.log_artifacts(str(final), "shap")
        mlflow.log_metric("shap_additivity_gap_degc", gap)
    with mlflow.start_run(run_name=f"explain-{arch}", tags={
            "thawcast.stage": "explain", "thawcast.architecture": arch, "git_commit": git_commit(),
            "registered_model": name, "model_version": str(mv.version), "model_run_id": mv.run_id}):
        mlflow.log_params({"registered_model": name, "model_version": str(mv.version), "model_run_id": mv.run_id,
                           "background": len(bi), "samples": len(si), "nsamples": e.nsamples})
        mlflow.log_metrics({"additivity_gap_degc": gap})
        for path in figs.values():
            mlflow.log_artifact(str(final / "figures" / path.name), "figures")
        mlflow.log_artifact(str(final / TOP_FILE))
    return final
