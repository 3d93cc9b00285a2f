"""Stage ``scenarios``: bias-corrected CMIP5 RCP inputs in ERA5-Land's variables and units.

For every RCP in ``cmip5.experiments``:

1. the CMIP5 band series (already canonical units and ECMWF sign conventions, see
   :mod:`thawcast.variables`) get four soil-water layers from ``mrsos``
   (:mod:`thawcast.prep.moisture`, ratios learned from ERA5-Land over the calibration years);
2. ``hist`` = CMIP5 ``historical`` spliced with ``bias_correction.splice_experiment`` over
   the calibration years (the same for every scenario); ``sim`` = ``historical`` spliced
   with the RCP, from the calibration start to the RCP's end;
3. every dynamic feature is corrected against ERA5-Land with ``xsdba`` by both EQM and QDM
   (:mod:`thawcast.prep.bias`): trained once per method and variable, applied to every RCP;
   the method in params is written, both feed the diagnostics.

The library work is :func:`thawcast.prep.scenarios.correct_scenarios`; this stage reads, validates
and writes. Outputs (``data/scenarios/``): ``<rcp>.nc`` (dims ``band, time``, with xsdba's
``bias_adjustment`` attribute on every variable), ``moisture_split.nc`` and
``adjustments/<method>_<variable>.nc``, each fitted xsdba adjustment's dataset (reload it with
:func:`thawcast.prep.bias.load` to inspect it or to correct another series);
``metrics/scenario_spread.json``: per variable, the scenario spread (high minus low RCP mean
change, projection vs calibration years) in the raw GCM, after EQM and after QDM.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import xarray as xr

from thawcast.catalogue import BIAS_METHODS
from thawcast.config import Config
from thawcast.layout import Layout
from thawcast.prep import bias
from thawcast.prep.scenarios import CMIP_NEEDS, correct_scenarios, open_band_table
from thawcast.quality.provenance import is_synthetic, provenance, staged_output
from thawcast.quality.suites import band_table_frame
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.variables import ERA5_FEATURES, OPTIONAL_FEATURES

log = logging.getLogger(__name__)

def _suite_params(cfg: Config, ds: xr.Dataset, n_bands: int) -> dict:
    t = pd.DatetimeIndex(ds["time"].values)
    return {"n_rows": len(cfg.rcp_experiments) * n_bands * len(t), "max_band": n_bands - 1,
            "experiments": list(cfg.rcp_experiments),
            "first_month": t[0].year * 12 + t[0].month - 1, "last_month": t[-1].year * 12 + t[-1].month - 1}


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    era = open_band_table(paths.era5_bands, tuple(v for v in ERA5_FEATURES if v not in OPTIONAL_FEATURES))
    cmip = {e: open_band_table(paths.cmip5_bands(e), CMIP_NEEDS) for e in cfg.cmip5.experiments}
    corrected, ratios, diag, adjustments = correct_scenarios(cfg, era, cmip)
    chosen = corrected[cfg.bias_correction.method]
    n_bands = era.sizes["band"]
    frame = band_table_frame(chosen, group="scenario")
    frame["month_index"] = pd.to_datetime(frame["time"]).dt.year * 12 + pd.to_datetime(frame["time"]).dt.month - 1
    section = run_suite(frame, "scenarios", paths.expectations, parameters=_suite_params(cfg, chosen, n_bands),
                        index_columns=["scenario", "band", "time"])
    bc = cfg.bias_correction
    synthetic = is_synthetic(era.attrs) or any(is_synthetic(d.attrs) for d in cmip.values())
    method_text = BIAS_METHODS[bc.method]
    attrs = {
        "bias_correction_method": bc.method, "bias_correction_description": method_text,
        "calibration_period": str(bc.calibration), "calibration_reference": "ERA5-Land band series",
        "calibration_model": f"{cfg.cmip5.model} historical + {bc.splice_experiment}",
        "nquantiles": bc.nquantiles, "qdm_period_years": bc.period_years, "grouping": "calendar month, per band", "xsdba_version": version("xsdba"),
        "soil_water_layers": "CMIP5 mrsos x ERA5-Land layer ratios (thawcast.prep.moisture)",
        "model_id": cfg.cmip5.model, "ensemble": cfg.cmip5.ensemble,
    }
    with staged_output(paths.scenarios) as tmp:
        validate_stage("scenarios", [section], paths.validation_reports)
        for rcp in cfg.rcp_experiments:
            ds = chosen.sel(scenario=rcp, drop=True)
            ds.attrs = provenance("scenarios", f"bias-corrected CMIP5 {rcp} inputs ({method_text})",
                                  cmip[rcp].attrs.get("source", rcp), synthetic=synthetic,
                                  experiment_id=rcp, **attrs)
            ds.to_netcdf(tmp / paths.scenario(rcp).name)
        rds = ratios.to_dataset()
        rds.attrs = provenance("scenarios", "ERA5-Land layer / upper-10 cm water ratios per band and month",
                               era.attrs.get("source", "ERA5-Land"), synthetic=synthetic,
                               calibration_period=str(bc.calibration))
        rds.to_netcdf(tmp / paths.moisture_split.name)
        for method, by_var in adjustments.items():
            for v, trained in by_var.items():
                bias.save(trained, tmp / paths.adjustment(method, v).relative_to(paths.scenarios))
        spread_file = paths.metric("scenario_spread.json")
        spread_file.parent.mkdir(parents=True, exist_ok=True)
        spread_file.write_text(json.dumps(diag, indent=2) + "\n")
    return paths.scenarios
