"""Stage ``perfect-model``: how far the networks carry outside their training climate, against a known truth.

Each registered network (the versions the train stage handed off, as in ``project``) and each reference
of :mod:`thawcast.analysis.perfect_model` is driven by the pseudo-reality's own drivers (no GCM, no bias
correction) and scored month by month against its soil temperatures, per decade x scenario x layer x
band. The inputs are band means over the cells the pseudo-reality simulates; the observed record over the
same cells supplies the 24 months before the first target, the in-climate test score and the references'
training statistics (training months only). No network is refitted: the truth never reaches training.

Outputs:

* ``data/perfect_model/perfect_model.nc``: ``truth(scenario, band, layer, time)``,
  ``prediction(scenario, model, band, layer, time)`` and ``rmse``/``bias(scenario, model, decade, band,
  layer)``, degC; ``figures/skill_by_decade.png``;
* ``metrics/perfect_model.{json,md}``: RMSE and bias per decade (overall, per layer, per band), the
  in-climate test RMSE of the same predictors, and the truth's sampling error (simulated cells vs all).

With real files (``perfect_model.enabled``) the outputs say why there is no perfect-model test.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis import extrapolation as ex
from thawcast.analysis import perfect_model as pm
from thawcast.analysis.baselines import RidgeBaseline
from thawcast.analysis.periods import decades, label
from thawcast.analysis.plots import decade_lines
from thawcast.analysis.projection import grid
from thawcast.analysis.tables import rounded
from thawcast.catalogue import FEATURES, SIGNAL_SOURCE
from thawcast.config import Config, YearRange
from thawcast.errors import DataError
from thawcast.ingest.common import open_netcdf
from thawcast.layout import Layout
from thawcast.parallel import torch_threads
from thawcast.prep.geometry import BandGeometry
from thawcast.prep.scenarios import open_band_table
from thawcast.prep.windows import (
    fit_months,
    forcing_windows,
    load_scalers,
    load_signal_reference,
    open_windows,
)
from thawcast.quality.provenance import git_commit, provenance, staged_output
from thawcast.tracking.registry import load_registration, read_registration, start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


def _skipped(cfg: Config, paths: Layout) -> Path:
    why = cfg.perfect_model_off
    with staged_output(paths.perfect_model) as tmp:
        (tmp / "SKIPPED.txt").write_text(f"No perfect-model test: {why}.\n")
    body = {"available": False, "reason": why}
    _write_metrics(paths, body, f"# Perfect model\n\nNot run: {why}.\n")
    log.info("perfect-model skipped: %s", why)
    return paths.perfect_model


def _write_metrics(paths: Layout, body: dict, md: str) -> None:
    out = paths.metric("perfect_model.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=2) + "\n")
    paths.metric("perfect_model.md").write_text(md)


def _read_bands(path: Path, variables: list[str]) -> xr.Dataset:
    """A band table the pseudo-reality stage wrote (its variables ``variables``)."""
    if not path.exists():
        raise DataError(path, "pseudo-reality band table not found (run the pseudo-reality stage)")
    with open_netcdf(path) as ds:
        missing = [v for v in variables if v not in ds]
        if missing:
            raise DataError(path, f"the pseudo-reality band table lacks {missing}")
        return ds[variables].load()


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    if not cfg.perfect_model_on:
        return _skipped(cfg, paths)
    use_store(cfg.mlflow, create=False)
    networks, labels = {}, {}
    for arch in cfg.training.architectures:
        reg = read_registration(paths.registration(arch), arch)
        networks[arch], mv = load_registration(reg)
        # named by its weights, not the registry's version counter (a tracked metric must not change when
        # a fresh clone registers the same weights as version 1)
        labels[arch] = f"{reg.registered_model} weights sha256 {reg.weights_sha256[:16]}"
        log.info("%s: %s is version %s", arch, reg.label, mv.version)
    geom = BandGeometry.from_config(cfg.study_area)
    band_names = list(cfg.study_area.band_labels[:geom.n_bands])
    names, w = cfg.feature_names, cfg.windows.length_months
    dyn = [n for n in names if FEATURES[n].kind == "dynamic"]
    keep = list(dict.fromkeys([*dyn, SIGNAL_SOURCE, "t_air", *TARGETS]))
    with open_netcdf(paths.static_table) as s:
        static = s.load()
    scalers, signal_ref = load_scalers(paths.scaler), load_signal_reference(paths.scaler)
    envelope = ex.Envelope.fit(open_windows(paths.history, "train"))

    observed = _read_bands(paths.pseudo_bands(), keep)
    with open_netcdf(paths.era5_bands) as ds:
        full = ds[list(TARGETS)].sel(time=observed["time"]).load()
    sampling = {t: float(np.sqrt(np.mean((observed[t].values - full[t].values) ** 2))) for t in TARGETS}
    log.info("truth's sampling error (simulated cells vs all): %s", sampling)

    obs_times = pd.DatetimeIndex(observed["time"].values)
    fit = fit_months(obs_times, cfg.windows)
    obs_y = np.stack([observed[t].transpose("band", "time").values for t in TARGETS], -1)
    clim = pm.monthly_climatology(obs_y, obs_times, fit)
    air_obs = observed["t_air"].transpose("band", "time").values
    train_air = air_obs[:, fit].mean(axis=1)
    ridge = RidgeBaseline().fit(open_windows(paths.history, "train"), open_windows(paths.history, "validation"))

    def predict(table: xr.Dataset, years: YearRange, source: str):
        """Months, truth and every predictor's ``[band, month, layer]``, and each window's distance."""
        ws = forcing_windows(names, w, years, table, static, scalers, signal_ref, source)
        months = pd.date_range(f"{years.start_year}-01-01", f"{years.end_year}-12-01", freq="MS")
        rec = pd.DatetimeIndex(table["time"].values)
        y = np.stack([table[t].transpose("band", "time").values for t in TARGETS], -1)
        truth = y[:, rec.get_indexer(months)]
        preds = {}
        for arch, model in networks.items():
            model.check_windows(ws, labels[arch])
            with torch_threads(cfg.training.threads):  # the same bits on any core count
                preds[arch] = grid(ws, model.predict_windows(ws), months, source)
        preds["ensemble"] = np.mean([preds[a] for a in networks], axis=0)
        preds["climatology"] = pm.climatology_forecast(clim, months)
        air = table["t_air"].transpose("band", "time").values
        preds["delta_change"] = pm.delta_change_forecast(clim, air, train_air, rec, months)
        preds["ridge"] = grid(ws, scalers["targets"].inverse(ridge.predict(ws)), months, source)
        preds["seasonal_persistence"] = pm.seasonal_persistence_forecast(y, rec, months)
        distance = grid(ws, envelope.diagnose(ws).distance[:, None], months, source)[..., 0]
        return months, truth, preds, distance

    test = YearRange(start_year=cfg.windows.test.start_year, end_year=cfg.windows.test.end_year)
    _, t_truth, t_preds, t_dist = predict(observed, test, str(paths.pseudo_bands()))
    test_rmse = {n: float(np.sqrt(np.nanmean((p - t_truth) ** 2))) for n, p in t_preds.items()}

    years = (cfg.period.end_year + 1, cfg.synthetic.scenario_end_year)
    bins = decades(*years)
    with open_netcdf(paths.projections_file) as ds:
        projected = ds["soil_temperature"].load()
    scores, warming, chain, truth_all, pred_all, dist_all = {}, {}, {}, [], [], []
    for rcp in cfg.rcp_experiments:
        source = str(paths.pseudo_bands(rcp))
        table = _read_bands(paths.pseudo_bands(rcp), keep)
        record = xr.concat([observed[keep], table[keep]], "time")
        months, truth, preds, dist = predict(record, YearRange(start_year=years[0], end_year=years[1]), source)
        scores[rcp] = {n: pm.decade_scores(truth, p, months, bins, band_names) for n, p in preds.items()}
        warming[rcp] = {n: pm.change(v, months, bins[0], bins[-1]) for n, v in {"truth": truth, **preds}.items()}
        chain[rcp] = _whole_chain(projected.sel(scenario=rcp), table, months, truth,
                                  np.stack([preds[a] for a in networks]), paths.scenario(rcp))
        truth_all.append(truth)
        pred_all.append(np.stack(list(preds.values())))
        dist_all.append(dist)
        log.info("%s: RMSE %s in %s, %s in %s", rcp, {n: round(s[label(bins[0])]["rmse"], 2)
                                                    for n, s in scores[rcp].items()}, label(bins[0]),
                 {n: round(s[label(bins[-1])]["rmse"], 2) for n, s in scores[rcp].items()}, label(bins[-1]))
    models = list(preds)
    rcps = list(cfg.rcp_experiments)
    ensemble = models.index("ensemble")
    extrapolation = ex.error_check(np.stack(dist_all), np.stack(pred_all)[:, ensemble] - np.stack(truth_all),
                                   months, bins, t_dist, t_preds["ensemble"] - t_truth)
    verdict = _verdict(scores, list(networks), bins)
    body = {"available": True, "synthetic": True, "stride": cfg.perfect_model.stride,
            "years": f"{years[0]}-{years[1]}", "decades": [label(b) for b in bins],
            "networks": list(networks), "registered": labels, "ridge_alpha": ridge.alpha,
            "truth_sampling_rmse": sampling, "test_years": str(test), "test_rmse": test_rmse,
            "scores": {rcp: {n: {d: {"rmse": v["rmse"], "bias": v["bias"],
                                     "per_layer": {k: x["rmse"] for k, x in v["per_layer"].items()}}
                                 for d, v in s.items()} for n, s in per.items()} for rcp, per in scores.items()},
            "warming": warming, "whole_chain": chain, "extrapolation": extrapolation, "verdict": verdict}
    ds = _dataset(rcps, models, months, np.stack(truth_all), np.stack(pred_all), np.stack(dist_all), bins,
                  band_names, cfg)
    body = rounded(body)
    with staged_output(paths.perfect_model) as tmp:
        ds.to_netcdf(tmp / "perfect_model.nc")
        decade_lines({rcp: {n: [scores[rcp][n][label(b)]["rmse"] for b in bins] for n in models} for rcp in rcps},
                     [label(b) for b in bins], test_rmse, "RMSE against the pseudo-truth (degC, all bands and"
                     " layers)", tmp / "figures" / "skill_by_decade.png")
    _write_metrics(paths, body, pm.markdown(body, list(networks), band_names))
    with start_run(run_name="perfect-model", tags={"thawcast.stage": "perfect-model", "git_commit": git_commit()}):
        last = label(bins[-1])
        mlflow.log_params({"stride": cfg.perfect_model.stride, "years": body["years"]})
        mlflow.log_metrics({f"{rcp}_{n}_rmse_{last}": scores[rcp][n][last]["rmse"]
                            for rcp in rcps for n in (*networks, "ensemble")})
        mlflow.log_metrics({f"{rcp}_chain_climate_rmse_{d}": v["rmse"] for rcp in rcps
                            for d, v in chain[rcp]["climate"]["chain"].items()})
        mlflow.log_metrics({f"extrapolation_{k}": extrapolation[k] for k in ("rank_correlation_windows",
                            "rank_correlation_decades") if extrapolation[k] is not None})
        mlflow.log_dict(body, "perfect_model.json")
        mlflow.log_artifacts(str(paths.perfect_model / "figures"), "figures")
    return paths.perfect_model


def _whole_chain(projected: xr.DataArray, pseudo: xr.Dataset, months: pd.DatetimeIndex, truth: np.ndarray,
                 alone: np.ndarray, corrected_path: Path) -> dict:
    """:func:`thawcast.analysis.perfect_model.whole_chain` over the projection's months inside the
    pseudo-reality's: the projected members, the corrected GCM air temperature (``corrected_path``) and
    the pseudo-reality's, aligned with ``truth`` and ``alone`` (``[member, band, month, layer]``)."""
    ptimes = pd.DatetimeIndex(projected["time"].values)
    common = months.intersection(ptimes)
    if len(common) < 12:
        raise DataError(corrected_path, f"the projections ({ptimes[0]:%Y-%m}..{ptimes[-1]:%Y-%m}) share less than a"
                        f" year with the pseudo-reality ({months[0]:%Y-%m}..{months[-1]:%Y-%m})")
    at, pt = months.get_indexer(common), ptimes.get_indexer(common)
    members = projected.transpose("model", "band", "time", "layer").values[:, :, pt]
    corrected = open_band_table(corrected_path, ("t_air",))["t_air"].transpose("band", "time")
    return pm.whole_chain(truth[:, at], members, alone[:, :, at],
                          pseudo["t_air"].transpose("band", "time").sel(time=common).values,
                          corrected.sel(time=common).values, common)


def _verdict(scores: dict, networks: list[str], bins: list[tuple[int, int]]) -> str:
    """One sentence: does the best network still beat the references in the last decade of every scenario?"""
    last = label(bins[-1])
    lines = []
    for rcp, per in scores.items():
        best_net = min(networks + ["ensemble"], key=lambda n: per[n][last]["rmse"])
        refs = {n: per[n][last]["rmse"] for n in ("climatology", "delta_change", "ridge")}
        best_ref = min(refs, key=refs.get)
        first = label(bins[0])
        grow = per[best_net][last]["rmse"] / per[best_net][first]["rmse"]
        word = "beats" if per[best_net][last]["rmse"] < refs[best_ref] else "does NOT beat"
        lines.append(f"{rcp}: in {last} the best network ({best_net}, RMSE {per[best_net][last]['rmse']:.2f})"
                     f" {word} the best driver-only reference ({best_ref}, {refs[best_ref]:.2f}); its RMSE is"
                     f" {grow:.1f}x that of {first}.")
    return " ".join(lines)




def _dataset(rcps, models, months, truth, pred, distance, bins, band_names, cfg: Config) -> xr.Dataset:
    decs = [label(b) for b in bins]
    shape = (len(rcps), len(models), len(decs), len(band_names), len(TARGETS))
    arr = {k: np.full(shape, np.nan) for k in ("rmse", "bias")}
    years = np.asarray(months.year)
    for i, r in enumerate(rcps):
        for j, _m in enumerate(models):
            for k, (a, b) in enumerate(bins):
                sel = (years >= a) & (years <= b)
                err = pred[i, j][:, sel] - truth[i][:, sel]  # [band, t, layer]
                arr["rmse"][i, j, k] = np.sqrt(np.nanmean(err**2, axis=1))
                arr["bias"][i, j, k] = np.nanmean(err, axis=1)
    dims5 = ("scenario", "model", "decade", "band", "layer")
    ds = xr.Dataset(
        {"truth": (("scenario", "band", "time", "layer"), truth.astype(np.float32),
                   {"units": "degC", "long_name": "pseudo-reality soil temperature (band mean of simulated cells)"}),
         "prediction": (("scenario", "model", "band", "time", "layer"), pred.astype(np.float32),
                        {"units": "degC", "long_name": "soil temperature driven by the pseudo-reality's drivers"}),
         "rmse": (dims5, arr["rmse"], {"units": "degC", "long_name": "RMSE against the pseudo-truth"}),
         "bias": (dims5, arr["bias"], {"units": "degC", "long_name": "mean error (prediction - truth)"}),
         "extrapolation_distance": (("scenario", "band", "time"), distance.astype(np.float32), {
             "units": "1", "long_name": "distance of the input window to the training windows (see the project"
             " stage; > 1: extrapolating)"})},
        coords={"scenario": rcps, "model": models, "band": np.arange(len(band_names)), "time": months,
                "layer": list(TARGETS), "decade": decs},
        attrs=provenance("perfect-model", "registered networks and references scored against the pseudo-reality",
                         "data/pseudo_reality", synthetic=True, thawcast_pseudo_reality="true",
                         perfect_model_stride=cfg.perfect_model.stride))
    if not np.isfinite(ds["rmse"]).all():
        raise DataError("perfect-model", "a decade x band x layer has no scored month")
    return ds
