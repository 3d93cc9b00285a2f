"""Stage ``project``: soil temperature under every RCP from every registered model, and the ensemble.

Each architecture is loaded from the MLflow registry (never from a file path): the version
holding the weights its train stage recorded in ``data/models/<arch>/registration.json``, the
same one the evaluate and explain stages use and the one ``@champion`` points at and predicts every month of the projection period for every band
from the bias-corrected scenario windows (``data/windows/<rcp>.nc``).

Outputs:

* ``data/projections/projections.nc``: ``soil_temperature(scenario, model, band, layer,
  time)`` and the ensemble across models (mean, std, min, max), degC, CF-style, with the
  registered model versions and run ids and the bias-correction method in its attributes;
* ``metrics/projection_period.json``: the dominant period (months) of every projected
  series from its periodogram. The paper's projections drifted to a two-year cycle; ours
  must show the 12-month one;
* the extrapolation diagnostic of :mod:`thawcast.analysis.extrapolation` (how far each projected
  window's inputs lie outside the training windows): ``extrapolation_distance`` and
  ``outside_range_share(scenario, band, time)`` in ``projections.nc``, and per scenario x decade in
  ``metrics/extrapolation.{json,md}`` beside the test-year windows, decades that rest on
  extrapolation marked.

The registered versions used are logged to a ``project`` run in the training experiment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import xarray as xr

from thawcast.analysis import extrapolation as ex
from thawcast.analysis.periods import decades, label
from thawcast.analysis.projection import (
    grid,
    period_diagnostic,
    projection_figures,
    projection_months,
)
from thawcast.analysis.tables import rounded
from thawcast.analysis.thaw import LAYER_MID_CM
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf
from thawcast.layout import Layout
from thawcast.parallel import torch_threads
from thawcast.prep.windows import open_windows
from thawcast.quality.provenance import git_commit, is_synthetic, provenance, staged_output
from thawcast.tracking.registry import load_registration, read_registration, start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    use_store(cfg.mlflow, create=False)
    months = projection_months(cfg.projection)
    models, versions, mlflow_versions = {}, {}, {}
    for arch in cfg.training.architectures:
        reg = read_registration(paths.registration(arch), arch)
        models[arch], mv = load_registration(reg)
        versions[arch] = {"registered_model": reg.registered_model, "weights_sha256": reg.weights_sha256}
        mlflow_versions[arch] = mv
        log.info("%s: %s is version %s", arch, reg.label, mv.version)

    envelope = ex.Envelope.fit(open_windows(paths.history, "train"))
    test_ws = open_windows(paths.history, "test")
    test = cfg.windows.test
    extrapolation = {"reference_quantile": ex.REFERENCE_QUANTILE, "distance_scale": envelope.scale,
                     "test_years": ex.decade_summary(envelope.diagnose(test_ws), test_ws.target_times(),
                                                     [(test.start_year, test.end_year)])[str(test)],
                     "scenarios": {}}
    bins = decades(cfg.projection.start_year, cfg.projection.end_year)
    temps, distance, outside, synthetic = [], [], [], False
    for rcp in cfg.rcp_experiments:
        path = paths.scenario_windows(rcp)
        ws = open_windows(path)
        with open_netcdf(path) as ds:
            synthetic = synthetic or is_synthetic(ds.attrs)
        diag = envelope.diagnose(ws)
        extrapolation["scenarios"][rcp] = ex.decade_summary(diag, ws.target_times(), bins)
        distance.append(grid(ws, diag.distance[:, None], months, str(path))[..., 0])
        outside.append(grid(ws, diag.outside_share[:, None], months, str(path))[..., 0])
        log.info("%s: windows extrapolating %s", rcp, ", ".join(
            f"{d} {s['share_extrapolating']:.0%}" for d, s in extrapolation["scenarios"][rcp].items()))
        per_model = []
        for arch, model in models.items():
            model.check_windows(ws, f"{versions[arch]['registered_model']} v{mlflow_versions[arch].version}")
            with torch_threads(cfg.training.threads):
                per_model.append(grid(ws, model.predict_windows(ws), months, str(path)))
        temps.append(np.stack(per_model))
        log.info("%s: projected %d bands x %d months with %d models", rcp, ws.x.shape[0], len(months), len(models))
    n_bands = temps[0].shape[1]
    da = xr.DataArray(np.stack(temps), dims=("scenario", "model", "band", "time", "layer"),
                      coords={"scenario": list(cfg.rcp_experiments), "model": list(models),
                              "band": np.arange(n_bands), "time": months, "layer": list(TARGETS)})
    da = da.transpose("scenario", "model", "band", "layer", "time")
    edges = cfg.study_area.band_edges
    ds = xr.Dataset(
        {"soil_temperature": da.assign_attrs(units="degC", long_name="projected monthly soil temperature",
                                             standard_name="soil_temperature"),
         "ensemble_mean": da.mean("model").assign_attrs(units="degC", long_name="mean across architectures"),
         "ensemble_std": da.std("model").assign_attrs(units="degC", long_name="std across architectures"),
         "ensemble_min": da.min("model").assign_attrs(units="degC", long_name="min across architectures"),
         "ensemble_max": da.max("model").assign_attrs(units="degC", long_name="max across architectures"),
         "extrapolation_distance": (("scenario", "band", "time"), np.stack(distance).astype(np.float32), {
             "units": "1", "long_name": "distance of the input window to the nearest training window, in units of"
             f" the training windows' {ex.REFERENCE_QUANTILE:.0%} nearest-neighbour distance (> 1: extrapolating)"}),
         "outside_range_share": (("scenario", "band", "time"), np.stack(outside).astype(np.float32), {
             "units": "1", "long_name": "share of the input window's months with an input outside its training range"})},
        coords={"depth": ("layer", list(LAYER_MID_CM), {"units": "cm", "long_name": "layer mid-depth"}),
                "lat_lower": ("band", list(edges[:n_bands]), {"units": "degrees_north"}),
                "lat_upper": ("band", list(edges[1:n_bands + 1]), {"units": "degrees_north"})},
        attrs=provenance("project", "registered sequence models driven by bias-corrected CMIP5 scenario windows",
                         [str(paths.scenario_windows(r)) for r in cfg.rcp_experiments], synthetic=synthetic,
                         registered_models=json.dumps(versions), bias_correction_method=cfg.bias_correction.method,
                         bias_correction_calibration=str(cfg.bias_correction.calibration),
                         projection_period=str(cfg.projection), cmip5_model=cfg.cmip5.model))
    diag = {"members": period_diagnostic(ds["soil_temperature"]),
            "ensemble_mean": period_diagnostic(ds["ensemble_mean"])}
    for what, d in diag.items():
        log.info("dominant period of the %s: %.1f..%.1f months, %d of %d series at 12 months%s", what,
                 d["period_min_months"], d["period_max_months"], round(d["fraction_12_months"] * d["n_series"]),
                 d["n_series"], "" if d["all_series_12_months"] else f"; not 12: {d['not_12_months']}")
    with staged_output(paths.projections) as tmp:
        ds.to_netcdf(tmp / paths.projections_file.name)
        projection_figures(ds, cfg.study_area.band_labels[:n_bands], tmp / "figures")
    period_file = paths.metric("projection_period.json")
    period_file.parent.mkdir(parents=True, exist_ok=True)
    period_file.write_text(json.dumps(diag, indent=2) + "\n")
    extrapolation = rounded(extrapolation)
    paths.metric("extrapolation.json").write_text(json.dumps(extrapolation, indent=2) + "\n")
    paths.metric("extrapolation.md").write_text(ex.markdown(extrapolation["scenarios"], extrapolation["test_years"]))
    with start_run(run_name="project", tags={"thawcast.stage": "project", "git_commit": git_commit(),
                                                   "bias_correction": cfg.bias_correction.method}):
        mlflow.log_params({f"model.{a}": f"{mv.name}/{mv.version}" for a, mv in mlflow_versions.items()})
        mlflow.log_params({f"run.{a}": mv.run_id for a, mv in mlflow_versions.items()})
        mlflow.log_params({"projection": str(cfg.projection), "scenarios": ",".join(cfg.rcp_experiments)})
        mlflow.log_metrics({f"{what}_fraction_12_months": d["fraction_12_months"] for what, d in diag.items()})
        mlflow.log_dict(diag, "projection_period.json")
        mlflow.log_metrics({f"{rcp}_share_extrapolating_{label(bins[-1])}": per[label(bins[-1])]["share_extrapolating"]
                            for rcp, per in extrapolation["scenarios"].items()})
        mlflow.log_dict(extrapolation, "extrapolation.json")
    return paths.projections


