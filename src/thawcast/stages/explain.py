"""Stage ``explain``: SHAP attributions of each registered model the train stage recorded.

``thawcast explain`` explains every architecture of ``training.architectures``, ``compute.workers`` of them
side by side in their own processes; ``thawcast explain <arch>`` one. Gradients run with
``training.threads`` torch threads, so the attributions do not depend on how many ran beside them.

Background: ``explain.background`` training windows (drawn with ``seed``, stratified by
band); explained: ``explain.samples`` test windows. Attribution per feature is summed over
the window's months (degC), then aggregated over bands and layers, and per layer.

Outputs (``data/explain/<arch>/``): ``shap_values.nc`` (window x feature x layer, with the
window-mean feature values, bands and target months), ``importance.csv`` (mean |SHAP| per
feature, overall and per layer), ``top_features.json``, ``figures/shap_bar.png`` and
``figures/shap_beeswarm.png``. All are logged to the registered version's training run
(under ``shap/``), and an ``explain-<arch>`` run records which version was explained.
The model is the version holding the weights of ``data/models/<arch>/registration.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import xarray as xr

from thawcast.analysis.explain import additivity_gap, attributions, importance, plots, stratified
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf
from thawcast.layout import Layout
from thawcast.prep.windows import open_windows
from thawcast.quality.provenance import git_commit, is_synthetic, provenance, staged_output
from thawcast.tracking.registry import load_registration, read_registration, start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def run(cfg: Config, arch: str | None = None, paths: Layout | None = None) -> Path:
    """Explain ``arch``, or every architecture (the DVC stage), side by side in ``compute.workers`` processes."""
    from thawcast.parallel import side_by_side

    paths = paths or Layout.at()
    if arch is not None:
        return explain_one(cfg, arch, paths)
    archs = cfg.training.architectures
    for a in archs:  # every model is in place before any process starts
        read_registration(paths.registration(a), a)
    use_store(cfg.mlflow, create=False)  # the store train made, opened once before the processes share it
    workers = cfg.compute.worker_count(len(archs))
    log.info("explaining %s, %d at a time", ", ".join(archs), workers)
    for i, out in side_by_side(_explain, [(cfg, a, paths) for a in archs], workers):
        log.info("explained %s: %s", archs[i], out)
    return paths.explain


def _explain(job: tuple[Config, str, Layout]) -> Path:
    return explain_one(*job)


def explain_one(cfg: Config, arch: str, paths: Layout) -> Path:
    """SHAP attributions of one architecture's registered model: ``data/explain/<arch>/``."""
    import mlflow

    from thawcast.parallel import torch_threads

    cfg.training.require(arch)
    e = cfg.explain
    use_store(cfg.mlflow, create=False)
    reg = read_registration(paths.registration(arch), arch)
    name = reg.registered_model
    model, mv = load_registration(reg)
    history = paths.history
    train, test = open_windows(history, "train"), open_windows(history, "test")
    model.check_windows(test, f"{name} v{mv.version}")
    with open_netcdf(history) as ds:
        synthetic = is_synthetic(ds.attrs)
    rng = np.random.default_rng(cfg.seed)
    bi, si = stratified(train, e.background, rng), stratified(test, e.samples, rng)
    bg, x = train.inputs(bi), test.inputs(si)
    log.info("%s: explaining %d test windows against %d training windows (%d gradient samples each)", arch,
             len(si), len(bi), e.nsamples)
    with torch_threads(cfg.training.threads):
        sv = attributions(model, bg, train.band[bi], x, test.band[si], e.nsamples, cfg.seed)
        gap = additivity_gap(model, sv, bg, train.band[bi], x, test.band[si])
    features = list(test.feature_names)
    imp = importance(sv, features, TARGETS)
    top = {"architecture": arch, "registered_model": name, "weights_sha256": reg.weights_sha256,
           "n_background": len(bi), "n_explained": len(si), "additivity_gap_degc": gap,
           "top": [{"feature": f, "mean_abs_shap_degc": float(v)} for f, v in imp["all"].head(e.top).items()],
           "top_per_layer": {lay: imp[lay].sort_values(ascending=False).head(5).index.tolist() for lay in TARGETS}}
    log.info("%s: top features %s (additivity gap %.3f degC)", arch,
             ", ".join(f"{t['feature']} {t['mean_abs_shap_degc']:.3f}" for t in top["top"][:5]), gap)
    with staged_output(paths.explanation(arch)) as tmp:
        ds = xr.Dataset(
            {"shap": (("window", "feature", "layer"), sv,
                      {"units": "degC", "long_name": "SHAP attribution summed over the window's months"}),
             "feature_value": (("window", "feature"), x.mean(axis=1),
                               {"long_name": "window-mean scaled feature value"}),
             "band": (("window",), test.band[si]), "target_time": (("window",), test.target_times(si).values)},
            coords={"feature": features, "layer": list(TARGETS)},
            attrs=provenance("explain", f"shap.GradientExplainer on {reg.label}", str(history),
                             synthetic=synthetic, registered_model=name, weights_sha256=reg.weights_sha256,
                             nsamples=e.nsamples))
        ds.to_netcdf(tmp / "shap_values.nc")
        imp.to_csv(tmp / "importance.csv")
        (tmp / paths.top_features(arch).name).write_text(json.dumps(top, indent=2) + "\n")
        figs = plots(sv, x.mean(axis=1), features, imp, f"{arch} ({reg.label}): SHAP on test windows",
                     tmp / "figures", e.top)
    final = paths.explanation(arch)
    with start_run(run_id=mv.run_id):
        mlflow.log_artifacts(str(final), "shap")
        mlflow.log_metric("shap_additivity_gap_degc", gap)
    with start_run(run_name=f"explain-{arch}", tags={
            "thawcast.stage": "explain", "thawcast.architecture": arch, "git_commit": git_commit(),
            "registered_model": name, "model_version": str(mv.version), "model_run_id": mv.run_id}):
        mlflow.log_params({"registered_model": name, "model_version": str(mv.version), "model_run_id": mv.run_id,
                           "background": len(bi), "samples": len(si), "nsamples": e.nsamples})
        mlflow.log_metrics({"additivity_gap_degc": gap})
        for path in figs.values():
            mlflow.log_artifact(str(final / "figures" / path.name), "figures")
        mlflow.log_artifact(str(paths.top_features(arch)))
    return final
