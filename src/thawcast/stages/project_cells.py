"""Stage ``project-cells``: per-cell soil temperature, active layer and near-surface permafrost under every RCP, from
the registered cell models, as maps and as extent per band (issue "Every grid cell", products).

Each cell's scenario drivers are the bias-corrected band scenario moved onto the cell's observed climate
(:mod:`thawcast.prep.cell_scenarios`); the cell model predicts the four layers month by month over each period of
``cells.projection_periods`` (every ``cells.projection_stride``-th grid row and column: a documented sample on 2 CPU
cores, 1 = every cell). The same products come for ``cells.reference_years`` twice: from the observed soil
temperatures (the truth) and from the model fed with the observed drivers, so the reader sees the model's own bias
in the indicator before reading any scenario.

Outputs:

* ``data/cell_projections/cell_projections.nc``: CF, on the regular lat/lon grid of the projected cells (opens in
  xarray and GIS tools): period-mean soil temperature per layer, ALT (cm), the share of years whose ALT is only a
  lower bound, and near-surface permafrost (1/0), per model, scenario and period; the reference decade's truth and
  model fields beside them;
* ``data/cell_projections/figures/``: ALT and permafrost maps of the last period under each RCP beside the observed
  reference decade;
* ``metrics/cell_projections.{json,md}``: near-surface permafrost extent per band, scenario and period (share of the
  band's area and km2), and its spread over the cell models.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.cell_projection import extent, extent_markdown, period_products
from thawcast.analysis.plots import cell_maps
from thawcast.analysis.tables import markdown_table
from thawcast.catalogue import SIGNAL, SIGNAL_SOURCE
from thawcast.config import Config, YearRange
from thawcast.errors import DataError
from thawcast.ingest.common import open_netcdf, select_years
from thawcast.ingest.era5land import open_era5land
from thawcast.layout import Layout
from thawcast.parallel import torch_threads
from thawcast.prep.cell_scenarios import disaggregate
from thawcast.prep.cell_windows import (
    CellData,
    CellHistory,
    at_cells,
    build_cell_history,
    cell_grid,
    check_scaler,
    grid_sample,
    open_cells,
)
from thawcast.prep.features import monthly_names
from thawcast.prep.windows import forcing_windows
from thawcast.quality.provenance import git_commit, provenance, staged_output
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.tracking.registry import load_registration, read_registration, start_run, use_store
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)

PRODUCTS = ("t_soil", "alt", "alt_lower_bound_share", "permafrost")


def _monthly(pred: np.ndarray, n_cells: int, years: YearRange) -> np.ndarray:
    """``[cell, month, layer]`` from the predictions of windows given cell by cell, months in order, every month of
    ``years`` (:func:`~thawcast.prep.windows.forcing_windows`, :meth:`CellHistory.windows_in`)."""
    if len(pred) != n_cells * years.n_months:
        raise DataError(None, f"{len(pred)} windows are not {n_cells} cells x the {years.n_months} months of {years}")
    return pred.reshape(n_cells, years.n_months, pred.shape[-1])


def run(cfg: Config, paths: Layout | None = None) -> Path:
    import mlflow

    paths = paths or Layout.at()
    data = open_cells(paths.cell_store, paths.static_cells)
    hist = build_cell_history(cfg, data)
    raw = open_era5land(paths.raw / "era5land")
    keep = grid_sample(data.static["lat"].values, data.static["lon"].values, (raw["lat"].values, raw["lon"].values),
                       cfg.cells.projection_stride)
    sub = CellData(data.dynamic.isel(cell=keep), data.static.isel(cell=keep), data.held_out[keep], data.area_km2[keep])
    n, w = int(keep.sum()), cfg.windows.length_months
    log.info("projecting %d of %d cells (every %d-th grid row and column) for %s", n, len(data),
             cfg.cells.projection_stride, ", ".join(map(str, cfg.cells.projection_periods)))
    use_store(cfg.mlflow, create=False)
    models, regs = {}, {}
    for arch in cfg.cells.architectures:
        check_scaler(hist, paths.cell_model(arch) / "scaler.json", arch)
        regs[arch] = read_registration(paths.cell_registration(arch), arch, "train-cells")
        models[arch] = load_registration(regs[arch])[0]
    n_bands = len(cfg.study_area.band_edges) - 1
    band_area = np.bincount(data.band, data.area_km2, minlength=n_bands)
    idx = np.flatnonzero(keep)

    ref = cfg.cells.reference_years
    span = select_years(sub.dynamic, ref.start_year, ref.end_year, "cells")
    truth = np.stack([span[t].transpose("cell", "time").values for t in TARGETS], -1)
    observed = period_products(truth)
    fields: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
    ref_ws = hist.windows_in(ref, idx)
    with torch_threads(1):
        for arch, model in models.items():
            fields[(arch, "era5land", str(ref))] = period_products(_monthly(model.predict_windows(ref_ws), n, ref))
    with open_netcdf(paths.era5_bands) as ds:
        band_obs = ds.load()
    drivers = [v for v in monthly_names(hist.feature_names) if v in sub.dynamic]
    if SIGNAL in hist.feature_names and SIGNAL_SOURCE not in drivers:  # z is computed from it
        drivers.append(SIGNAL_SOURCE)
    for rcp in cfg.rcp_experiments:
        with open_netcdf(paths.scenario(rcp)) as ds:
            scen = ds.load()
        for period in cfg.cells.projection_periods:
            first = pd.Timestamp(period.start_year, 1, 1) - pd.DateOffset(months=w)
            span = scen.sel(time=slice(first, pd.Timestamp(period.end_year, 12, 1)))
            cell_drivers = disaggregate(span, band_obs, sub.dynamic, sub.band, cfg.bias_correction.calibration,
                                        drivers)
            ws = forcing_windows(hist.feature_names, w, period, cell_drivers, sub.static, hist.scalers,
                                 hist.signal_ref, f"{rcp} cell drivers", unit="cell")
            with torch_threads(1):
                for arch, model in models.items():
                    fields[(arch, rcp, str(period))] = period_products(_monthly(model.predict_windows(ws), n, period))
            log.info("%s %s: %d cells x %d months projected by %d model(s)", rcp, period, n, period.n_months,
                     len(models))

    frame = _validation_frame(fields)
    section = run_suite(frame, "cell_projections", paths.expectations, parameters={"n_rows": len(frame)},
                        index_columns=["model", "scenario", "period", "cell"])
    validate_stage("project-cells", [section], paths.validation_reports)
    metrics = _metrics(cfg, fields, observed, sub, band_area, n_bands)
    if cfg.perfect_model_on:
        metrics["perfect_model"] = _perfect_model(cfg, paths, hist, models, fields, sub, drivers)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    text = _markdown(cfg, metrics, n, len(data))
    ds = _dataset(cfg, fields, observed, sub)
    with staged_output(paths.cell_projections) as tmp:
        ds.to_netcdf(tmp / paths.cell_projection_file.name)
        _maps(cfg, ds, tmp / "figures")
    paths.metric("cell_projections.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    paths.metric("cell_projections.md").write_text(text)
    tags = {"thawcast.stage": "project-cells", "thawcast.units": "cells", "git_commit": git_commit(),
            "synthetic_data": str(cfg.source.kind == "synthetic").lower()}
    with start_run(run_name="project-cells", tags=tags):
        for arch, reg in regs.items():
            mlflow.log_param(f"{arch}.model", reg.label)
        mlflow.log_artifact(str(paths.metric("cell_projections.md")))
        mlflow.log_artifact(str(paths.metric("cell_projections.json")))
        mlflow.log_artifacts(str(paths.cell_projections / "figures"), "figures")
    return paths.cell_projections


def _perfect_model(cfg: Config, paths: Layout, hist: CellHistory, models: dict, fields: dict, sub: CellData,
                   drivers: list[str]) -> dict:
    """Per RCP and period, against the pseudo-reality's soil (the projected cells it simulates): the true
    near-surface permafrost extent (all bands), the projected one, the one of the cell model fed with the true
    drivers (no downscaling or bias-correction error), the RMSE of period-mean ALT (cm) and the share of cells whose
    permafrost indicator agrees with the truth."""
    lat, lon = sub.static["lat"].values, sub.static["lon"].values
    w, out = cfg.windows.length_months, {}
    observed = sub.dynamic[drivers]
    for rcp in cfg.rcp_experiments:
        # a file's whole decade per read: h5netcdf's cost is per read, not per byte (a year per read: 2.5x slower)
        truth = at_cells(open_era5land(paths.pseudo_truth(rcp), chunks={"time": -1}), lat, lon).load()
        has = truth[TARGETS[0]].notnull().all("time").values
        if not has.any():
            raise DataError(paths.pseudo_truth(rcp), "no projected cell has a pseudo-reality soil temperature (the"
                            " pseudo-reality and the cells are from different runs): rerun `dvc repro project-cells`")
        series = xr.concat([observed, truth[drivers].assign_coords(cell=observed["cell"].values)], dim="time")
        for period in cfg.cells.projection_periods:
            first = pd.Timestamp(period.start_year, 1, 1) - pd.DateOffset(months=w)
            ws = forcing_windows(hist.feature_names, w, period,
                                 series.sel(time=slice(first, pd.Timestamp(period.end_year, 12, 1))), sub.static,
                                 hist.scalers, hist.signal_ref, f"{rcp} pseudo-reality drivers", unit="cell")
            span = select_years(truth, period.start_year, period.end_year, rcp)
            true = period_products(np.stack([span[t].transpose("cell", "time").values for t in TARGETS], -1)[has])
            for arch, model in models.items():
                with torch_threads(1):
                    fed = period_products(_monthly(model.predict_windows(ws), len(lat), period))
                chain, area = fields[(arch, rcp, str(period))], sub.area_km2[has]
                out.setdefault(arch, {}).setdefault(rcp, {})[str(period)] = {
                    "cells": int(has.sum()), "true_extent": _share(true["permafrost"], area),
                    "projected_extent": _share(chain["permafrost"][has], area),
                    "true_drivers_extent": _share(fed["permafrost"][has], area),
                    "alt_rmse_cm": float(np.sqrt(np.mean((chain["alt"][has] - true["alt"]) ** 2))),
                    "true_drivers_alt_rmse_cm": float(np.sqrt(np.mean((fed["alt"][has] - true["alt"]) ** 2))),
                    "permafrost_agreement": float(np.mean(chain["permafrost"][has] == true["permafrost"]))}
        log.info("%s: perfect-model scores of the cell projections on %d cells", rcp, has.sum())
    return out


def _validation_frame(fields: dict) -> pd.DataFrame:
    """One row per model, scenario (``era5land``: the reference decade), period and cell: its products."""
    frames = []
    for (arch, scen, period), p in fields.items():
        frame = pd.DataFrame({"model": arch, "scenario": scen, "period": period, "cell": np.arange(len(p["alt"])),
                              "alt": p["alt"], "alt_lower_bound_share": p["alt_lower_bound_share"],
                              "permafrost": p["permafrost"].astype(int)})
        for j, t in enumerate(TARGETS):
            frame[t] = p["t_soil"][:, j]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _share(permafrost: np.ndarray, area: np.ndarray) -> float:
    """Area-weighted share of the cells with near-surface permafrost."""
    return float((area * permafrost).sum() / area.sum())


def _metrics(cfg: Config, fields: dict, observed: dict, sub: CellData, band_area: np.ndarray, n_bands: int) -> dict:
    def ext(products: dict) -> dict:
        return extent(products["permafrost"], sub.area_km2, sub.band, n_bands, band_area)

    ref = str(cfg.cells.reference_years)
    out = {"observed": {"period": ref, "extent": ext(observed)}, "models": {}, "spread": {}}
    for (arch, scen, period), products in fields.items():
        entry = out["models"].setdefault(arch, {"reference": None, "scenarios": {}})
        if scen == "era5land":
            entry["reference"] = {"period": period, "extent": ext(products)}
        else:
            entry["scenarios"].setdefault(scen, {})[period] = ext(products)
    for rcp in cfg.rcp_experiments:
        for period in map(str, cfg.cells.projection_periods):
            shares = [m["scenarios"][rcp][period]["share_all"] for m in out["models"].values()]
            out["spread"].setdefault(rcp, {})[period] = {"min": min(shares), "max": max(shares)}
    return out


def _markdown(cfg: Config, metrics: dict, n: int, n_all: int) -> str:
    names = cfg.study_area.band_labels
    lines = ["# Grid cells: near-surface permafrost extent", "",
             (f"{n} of {n_all} cells (one in {cfg.cells.projection_stride} along each grid row and column); near-surface"
              " permafrost = the deepest layer (100-289 cm) at or below 0 degC all year in at least two consecutive"
              " years of the period; share of each band's area (km2: that share of all the band's cells)."), ""]
    for arch, entry in metrics["models"].items():
        lines += [f"Cell model **{arch}**:", "", extent_markdown(entry["scenarios"], metrics["observed"],
                                                                 entry["reference"], names, arch), ""]
    for arch, per in metrics.get("perfect_model", {}).items():
        head = ["scenario", "period", "true extent", "projected extent", "extent, true drivers", "ALT RMSE (cm)",
                "ALT RMSE, true drivers (cm)", "permafrost agrees"]
        rows = [[rcp, p, *(f"{100 * e[k]:.1f}%" for k in ("true_extent", "projected_extent", "true_drivers_extent")),
                 f"{e['alt_rmse_cm']:.1f}", f"{e['true_drivers_alt_rmse_cm']:.1f}", f"{100 * e['permafrost_agreement']:.0f}%"]
                for rcp, periods in per.items() for p, e in periods.items()]
        n_truth = next(iter(next(iter(per.values())).values()))["cells"]
        lines += [(f"Perfect model ({arch}): the projections against the pseudo-reality's soil on the {n_truth}"
                   " projected cells it simulates. 'Projected' is the whole chain (bias-corrected CMIP5, moved onto"
                   " each cell, then the cell model); 'true drivers' feeds the cell model the pseudo-reality's own"
                   " drivers, so the gap between the two is the chain's, the rest the network's. Extents are shares"
                   " of those cells' area."), "", *markdown_table(head, rows), ""]
    if len(metrics["models"]) > 1:
        lines += ["Spread over the cell models (all bands):", ""]
        lines += [f"- {rcp} {p}: {100 * s['min']:.1f}% to {100 * s['max']:.1f}%"
                  for rcp, per in metrics["spread"].items() for p, s in per.items()]
        lines.append("")
    return "\n".join(lines)


def _dataset(cfg: Config, fields: dict, observed: dict, sub: CellData) -> xr.Dataset:
    (lat, lon), (row, col) = cell_grid(sub.static["lat"].values, sub.static["lon"].values)
    models = list(cfg.cells.architectures)
    scenarios = list(cfg.rcp_experiments)
    periods = [str(p) for p in cfg.cells.projection_periods]

    def grid(values: np.ndarray) -> np.ndarray:
        out = np.full((*values.shape[1:], lat.size, lon.size), np.nan, dtype=np.float32)
        out[..., row, col] = np.moveaxis(values, 0, -1)
        return out

    def stacked(name: str) -> np.ndarray:
        return np.stack([np.stack([np.stack([grid(np.asarray(fields[(m, s, p)][name], float)) for p in periods])
                                   for s in scenarios]) for m in models])

    spatial = ("lat", "lon")
    attrs = {"t_soil": {"units": "degC", "long_name": "period-mean soil temperature"},
             "alt": {"units": "cm", "long_name": "period-mean active-layer thickness (at most 194.5 cm: a bound)"},
             "alt_lower_bound_share": {"units": "1", "long_name": "share of the years whose ALT is only a lower bound"},
             "permafrost": {"units": "1", "long_name": "near-surface permafrost: layer 4 at or below 0 degC all year"
                                                       " in at least two consecutive years (1), else 0"}}
    data = {}
    for name in PRODUCTS:
        dims = ("model", "scenario", "period", *(("layer",) if name == "t_soil" else ()), *spatial)
        data[name] = (dims, stacked(name), attrs[name])
        ref = np.stack([grid(np.asarray(fields[(m, "era5land", str(cfg.cells.reference_years))][name], float))
                        for m in models])
        data[f"reference_{name}"] = (("model", *dims[3:]), ref, {**attrs[name], "long_name": attrs[name]["long_name"]
                                     + f", {cfg.cells.reference_years}, the model fed with the observed drivers"})
        data[f"observed_{name}"] = (dims[3:], grid(np.asarray(observed[name], float)),
                                    {**attrs[name], "long_name": attrs[name]["long_name"]
                                     + f", {cfg.cells.reference_years}, from the observed soil temperatures"})
    ds = xr.Dataset(data, coords={
        "model": models, "scenario": scenarios, "period": periods, "layer": list(TARGETS),
        "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
        "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"})})
    ds.attrs = provenance("project-cells", "per-cell projections of the registered cell models: BCSD-style"
                          " disaggregation of the corrected band scenarios to each cell's observed climate",
                          "data/cells, data/scenarios, data/bands, data/cell_models",
                          synthetic=cfg.source.kind == "synthetic",
                          projection_stride=cfg.cells.projection_stride)
    return ds


def _maps(cfg: Config, ds: xr.Dataset, folder: Path) -> None:
    lat, lon = ds["lat"].values, ds["lon"].values
    grid = np.isfinite(ds["observed_alt"].values)
    index = np.nonzero(grid)
    last = ds["period"].values[-1]
    model = str(ds["model"].values[0])
    area = cfg.study_area
    for name, label, cmap, limits in (("alt", "ALT (cm)", "YlOrRd", (0.0, 194.5)),
                                      ("permafrost", "near-surface permafrost (1) or not (0)", "Blues", (0.0, 1.0))):
        panels = {f"observed {cfg.cells.reference_years}": ds[f"observed_{name}"].values[index]}
        for rcp in ds["scenario"].values:
            panels[f"{model} {rcp} {last}"] = ds[name].sel(model=model, scenario=rcp, period=last).values[index]
        cell_maps((lat, lon), index, panels, None, area.band_edges, (area.lon_min, area.lon_max), label,
                  folder / f"{name}_{last}.png", cmap=cmap, limits=limits)
