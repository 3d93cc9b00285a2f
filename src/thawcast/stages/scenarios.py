"""Stage ``scenarios``: bias-corrected CMIP5 RCP inputs in ERA5-Land's variables and units.

For every RCP in ``cmip5.experiments``:

1. the CMIP5 band series (already canonical units and ECMWF sign conventions, see
   :mod:`thawcast.variables`) get four soil-water layers from ``mrsos``
   (:mod:`thawcast.moisture`, ratios learned from ERA5-Land over the calibration years);
2. ``hist`` = CMIP5 ``historical`` spliced with ``bias_correction.splice_experiment`` over
   the calibration years (the same for every scenario); ``sim`` = ``historical`` spliced
   with the RCP, from the calibration start to the RCP's end;
3. every dynamic feature is corrected against ERA5-Land with ``xsdba`` by both EQM and QDM
   (:mod:`thawcast.bias`); the method in params is written, both feed the diagnostics.

Outputs (``data/scenarios/``): ``<rcp>.nc`` (dims ``band, time``) and ``moisture_split.nc``;
``metrics/scenario_spread.json``: per variable, the scenario spread (high minus low RCP mean
change, projection vs calibration years) in the raw GCM, after EQM and after QDM.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.bias import METHODS, adjust, mean_change, retained, spread
from thawcast.config import Config, YearRange
from thawcast.contracts import band_table_frame
from thawcast.errors import DataError
from thawcast.moisture import layer_ratios, split
from thawcast.provenance import is_synthetic, provenance, staged_output
from thawcast.readers.common import check_months, open_netcdf, select_years
from thawcast.stages.bands import ERA5_FILE, cmip5_file
from thawcast.validation import run_suite, validate_stage
from thawcast.variables import ERA5_FEATURES

log = logging.getLogger(__name__)

SPLIT_FILE = "moisture_split.nc"
SPREAD_FILE = "scenario_spread.json"
DIRECT = tuple(v for v in ERA5_FEATURES if not v.startswith("w"))
CMIP_NEEDS = (*DIRECT, "w_top_cmip")


def scenario_file(rcp: str) -> str:
    return f"{rcp}.nc"


def _years(rng: YearRange) -> slice:
    return slice(pd.Timestamp(rng.start_year, 1, 1), pd.Timestamp(rng.end_year, 12, 1))


def check_band_table(ds: xr.Dataset, variables: tuple[str, ...], source: str) -> xr.Dataset:
    """A band table has the variables, month-start datetimes and no gaps; else a :class:`DataError`."""
    missing = [v for v in variables if v not in ds]
    if missing:
        raise DataError(source, f"missing variable(s) {missing} (have {sorted(ds.data_vars)})")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise DataError(source, f"time has dtype {ds['time'].dtype} (a non-standard calendar?); expected"
                        " month-start datetimes aligned with ERA5-Land (re-run the bands stage)")
    times = pd.DatetimeIndex(ds["time"].values)
    off = times[(times.day != 1) | (times.hour != 0)]
    if len(off):
        raise DataError(source, f"time stamps are not month starts (e.g. {off[0]:%Y-%m-%d %H:%M}): calendars do"
                        " not align with ERA5-Land's monthly means")
    check_months(times, source, "time axis")
    return ds


def open_band_table(path: Path, variables: tuple[str, ...]) -> xr.Dataset:
    """Load a band table and check it with :func:`check_band_table`."""
    with open_netcdf(path) as ds:
        return check_band_table(ds.load(), variables, str(path))


def splice(first: xr.Dataset, then: xr.Dataset, source: str) -> xr.Dataset:
    """``first`` up to the month before ``then`` starts, followed by ``then``; gaps are errors."""
    start = then["time"].values[0]
    out = xr.concat([first.sel(time=first["time"] < start), then], dim="time", data_vars="all",
                    coords="minimal", compat="override", join="override")
    check_months(pd.DatetimeIndex(out["time"].values), source, "spliced series")
    return out


def cmip_features(ds: xr.Dataset, ratios: xr.DataArray) -> xr.Dataset:
    """The 12 ERA5-Land dynamic features from a CMIP band table (layered soil water from mrsos)."""
    out = xr.Dataset({v: ds[v] for v in DIRECT})
    out.update(split(ds["w_top_cmip"], ratios))
    return out[list(ERA5_FEATURES)]


def _diagnostics(raw: xr.Dataset, corrected: dict[str, xr.Dataset], rcps: list[str], cal: YearRange,
                 proj: YearRange) -> dict:
    order = sorted(rcps)
    high, low = order[-1], order[0]
    out = {"pair": f"{high} minus {low}", "calibration": str(cal), "projection": str(proj),
           "definition": "difference between the two scenarios' mean change (projection minus calibration"
                         " years, all bands and months pooled), canonical units", "spread": {}}
    for v in ERA5_FEATURES:
        row = {"raw": spread(mean_change(raw[v], _years(cal), _years(proj)), high, low)}
        for m in METHODS:
            row[m] = spread(mean_change(corrected[m][v], _years(cal), _years(proj)), high, low)
        for m in METHODS:
            row[f"{m}_retained"] = retained(row[m], row["raw"])
        out["spread"][v] = row
    return out


def correct_scenarios(cfg: Config, era: xr.Dataset, cmip: dict[str, xr.Dataset]) -> tuple[dict, xr.Dataset, dict]:
    """Corrected scenarios for both methods, the raw stack, the moisture ratios and diagnostics.

    Returns ``(corrected, ratios, diagnostics)`` where ``corrected[method]`` is a dataset
    with a ``scenario`` dimension.
    """
    bc, rcps = cfg.bias_correction, list(cfg.rcp_experiments)
    cal = bc.calibration
    ref = select_years(era, cal.start_year, cal.end_year, "ERA5-Land bands (calibration)")
    ratios = layer_ratios(ref)
    feats = {e: cmip_features(ds, ratios) for e, ds in cmip.items()}
    hist = select_years(splice(feats["historical"], feats[bc.splice_experiment], "historical+splice"),
                        cal.start_year, cal.end_year, f"CMIP5 historical+{bc.splice_experiment} (calibration)")
    sims = {}
    for rcp in rcps:
        s = splice(feats["historical"], feats[rcp], f"historical+{rcp}")
        end = pd.Timestamp(s["time"].values[-1])
        if end < pd.Timestamp(cfg.projection.end_year, 12, 1):
            raise DataError(f"CMIP5 {rcp}", f"data end {end:%Y-%m}, before the projection end"
                            f" {cfg.projection.end_year}-12")
        sims[rcp] = select_years(s, cal.start_year, end.year, f"CMIP5 historical+{rcp}")
    last = min(pd.Timestamp(s["time"].values[-1]) for s in sims.values())
    raw = xr.concat([s.sel(time=slice(None, last)) for s in sims.values()],
                    dim=pd.Index(rcps, name="scenario"), data_vars="all", join="exact")
    corrected = {}
    for m in METHODS:
        log.info("bias correction %s: %d variables x %d scenarios", m.upper(), len(ERA5_FEATURES), len(rcps))
        corrected[m] = xr.Dataset({v: adjust(ref[v], hist[v], raw[v], variable=v, method=m,
                                             nquantiles=bc.nquantiles, seed=cfg.seed,
                                             period_years=bc.period_years) for v in ERA5_FEATURES})
    diag = _diagnostics(raw, corrected, rcps, cal, cfg.projection) if len(rcps) > 1 else {}
    return corrected, ratios, diag


def _suite_params(cfg: Config, ds: xr.Dataset, n_bands: int) -> dict:
    t = pd.DatetimeIndex(ds["time"].values)
    return {"n_rows": len(cfg.rcp_experiments) * n_bands * len(t), "max_band": n_bands - 1,
            "experiments": list(cfg.rcp_experiments),
            "first_month": t[0].year * 12 + t[0].month - 1, "last_month": t[-1].year * 12 + t[-1].month - 1}


def run(cfg: Config, bands_dir: Path = Path("data/bands"), out_dir: Path = Path("data/scenarios"),
        metrics_dir: Path = Path("metrics"), suite_dir: Path = Path("expectations"),
        report_dir: Path = Path("reports/validation")) -> Path:
    era = open_band_table(bands_dir / ERA5_FILE, ERA5_FEATURES)
    cmip = {e: open_band_table(bands_dir / cmip5_file(e), CMIP_NEEDS) for e in cfg.cmip5.experiments}
    corrected, ratios, diag = correct_scenarios(cfg, era, cmip)
    chosen = corrected[cfg.bias_correction.method]
    n_bands = era.sizes["band"]
    frame = band_table_frame(chosen, group="scenario")
    frame["month_index"] = pd.to_datetime(frame["time"]).dt.year * 12 + pd.to_datetime(frame["time"]).dt.month - 1
    section = run_suite(frame, "scenarios", suite_dir, parameters=_suite_params(cfg, chosen, n_bands),
                        index_columns=["scenario", "band", "time"])
    bc = cfg.bias_correction
    synthetic = is_synthetic(era.attrs) or any(is_synthetic(d.attrs) for d in cmip.values())
    method_text = {"qdm": "quantile delta mapping (trend-preserving, Cannon et al. 2015)",
                   "eqm": "empirical quantile mapping (as in the paper)"}[bc.method]
    attrs = {
        "bias_correction_method": bc.method, "bias_correction_description": method_text,
        "calibration_period": str(bc.calibration), "calibration_reference": "ERA5-Land band series",
        "calibration_model": f"{cfg.cmip5.model} historical + {bc.splice_experiment}",
        "nquantiles": bc.nquantiles, "qdm_period_years": bc.period_years, "grouping": "calendar month, per band", "xsdba_version": version("xsdba"),
        "soil_water_layers": "CMIP5 mrsos x ERA5-Land layer ratios (thawcast.moisture)",
        "model_id": cfg.cmip5.model, "ensemble": cfg.cmip5.ensemble,
    }
    metrics_dir = Path(metrics_dir)
    with staged_output(out_dir) as tmp:
        validate_stage("scenarios", [section], report_dir)
        for rcp in cfg.rcp_experiments:
            ds = chosen.sel(scenario=rcp, drop=True)
            ds.attrs = provenance("scenarios", f"bias-corrected CMIP5 {rcp} inputs ({method_text})",
                                  cmip[rcp].attrs.get("source", rcp), synthetic=synthetic,
                                  experiment_id=rcp, **attrs)
            ds.to_netcdf(tmp / scenario_file(rcp))
        rds = ratios.to_dataset()
        rds.attrs = provenance("scenarios", "ERA5-Land layer / upper-10 cm water ratios per band and month",
                               era.attrs.get("source", "ERA5-Land"), synthetic=synthetic,
                               calibration_period=str(bc.calibration))
        rds.to_netcdf(tmp / SPLIT_FILE)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        (metrics_dir / SPREAD_FILE).write_text(json.dumps(diag, indent=2) + "\n")
    return out_dir
