"""Data contracts: Great Expectations suites built from the canonical variable table.

The JSON suites in ``expectations/`` are generated from this module
(``thawcast expectations``) so that physical ranges and units live in one place
(:mod:`thawcast.variables`); a test keeps the committed files in step.

Each stage validates a *validation frame* of its output (one row per month, band or
band-month, see the ``*_frame`` functions) before it writes anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import TEXTURE
from thawcast.variables import ERA5_FEATURES, INVARIANTS, TARGETS, VARIABLES

CMIP5_CANONICAL = tuple(n for n, v in VARIABLES.items() if v.cmip5)
#: What one raw ERA5-Land file holds (the snow depth is derived from two of them when files are combined).
ERA5_RAW = tuple(n for n, v in VARIABLES.items() if v.era5)



def _exp(kind: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs}


def _per_variable(v: str, expectations: list[dict]) -> list[dict]:
    """``expectations`` of variable ``v``; those of an optional one (snow) are marked so, and a frame without
    its columns skips them (:func:`thawcast.quality.validation.run_suite`)."""
    if VARIABLES[v].optional:
        for e in expectations:
            e["meta"] = {"optional_variable": v}
    return expectations


def _range(column: str, lo: float, hi: float) -> dict:
    return _exp("expect_column_values_to_be_between", column=column, min_value=lo, max_value=hi)


def _grid_summary_suite(name: str, variables: tuple[str, ...], group: str | None) -> dict:
    ex = [_exp("expect_column_to_exist", column="time"), _exp("expect_column_to_exist", column="source_file")]
    ex.append(_exp("expect_column_values_to_be_between", column="dt_months", min_value=1, max_value=1))
    if group:
        ex.append(_exp("expect_compound_columns_to_be_unique", column_list=[group, "time"]))
    else:
        ex.append(_exp("expect_column_values_to_be_unique", column="time"))
    for v in variables:
        lo, hi = VARIABLES[v].valid_range
        ex += _per_variable(v, [
            _exp("expect_column_values_to_not_be_null", column=f"{v}__min"),
            _range(f"{v}__min", lo, hi),
            _range(f"{v}__max", lo, hi),
            _exp("expect_column_values_to_be_between", column=f"{v}__nan_land", min_value=0, max_value=0),
            _exp("expect_column_values_to_be_in_set", column=f"{v}__units", value_set=[VARIABLES[v].unit]),
        ])
    if group:
        ex.append(_exp("expect_column_values_to_be_in_set", column=group,
                       value_set={"$PARAMETER": "experiments"}))
    return {"name": name, "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _band_table_suite(name: str, variables: tuple[str, ...], group: str | None, span: bool = False) -> dict:
    """Band tables; ``span`` adds first/last month checks (every month present per group)."""
    keys = ([group] if group else []) + ["band", "time"]
    ex = [
        _exp("expect_table_row_count_to_equal", value={"$PARAMETER": "n_rows"}),
        _exp("expect_compound_columns_to_be_unique", column_list=keys),
        _exp("expect_column_values_to_be_between", column="band", min_value=0,
             max_value={"$PARAMETER": "max_band"}),
        _exp("expect_column_values_to_be_between", column="dt_months", min_value=1, max_value=1),
    ]
    for v in variables:
        lo, hi = VARIABLES[v].valid_range
        ex += _per_variable(v, [
            _exp("expect_column_values_to_not_be_null", column=v),
            _range(v, lo, hi),
            _exp("expect_column_values_to_be_in_set", column=f"{v}__units", value_set=[VARIABLES[v].unit]),
        ])
    if group:
        ex.append(_exp("expect_column_values_to_be_in_set", column=group,
                       value_set={"$PARAMETER": "experiments"}))
    if span:
        ex += [
            _exp("expect_column_min_to_be_between", column="month_index",
                 min_value={"$PARAMETER": "first_month"}, max_value={"$PARAMETER": "first_month"}),
            _exp("expect_column_max_to_be_between", column="month_index",
                 min_value={"$PARAMETER": "last_month"}, max_value={"$PARAMETER": "last_month"}),
        ]
    return {"name": name, "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _when(expectation: dict, column: str, value) -> dict:
    """Apply ``expectation`` only to rows where ``column == value`` (a GX 1.x row condition)."""
    expectation["kwargs"]["row_condition"] = {"type": "comparison", "column": {"name": column},
                                              "operator": "==", "parameter": value}
    return expectation


def _windows_suite() -> dict:
    """One row per window (history splits and scenarios); see :func:`thawcast.prep.windows.window_frame`."""
    ex = [
        _exp("expect_table_row_count_to_equal", value={"$PARAMETER": "n_rows"}),
        _exp("expect_compound_columns_to_be_unique", column_list=["split", "band", "target"]),
        _exp("expect_column_values_to_be_in_set", column="split", value_set={"$PARAMETER": "splits"}),
        _exp("expect_column_values_to_be_between", column="band", min_value=0,
             max_value={"$PARAMETER": "max_band"}),
        # the target is the month right after the last input month; the window spans w months
        _exp("expect_column_values_to_be_between", column="lead_months", min_value=1, max_value=1),
        _exp("expect_column_values_to_be_between", column="span_months",
             min_value={"$PARAMETER": "length"}, max_value={"$PARAMETER": "length"}),
        _exp("expect_column_values_to_be_between", column="n_features",
             min_value={"$PARAMETER": "n_features"}, max_value={"$PARAMETER": "n_features"}),
        _exp("expect_column_values_to_be_between", column="nan_inputs", min_value=0, max_value=0),
        _exp("expect_column_values_to_be_between", column="nan_targets", min_value=0, max_value=0),
    ]
    for split in ("train", "validation", "test", "scenario"):
        ex.append(_when(_exp("expect_column_values_to_be_between", column="target_year",
                             min_value={"$PARAMETER": f"{split}_first"}, max_value={"$PARAMETER": f"{split}_last"}),
                        "kind", split))
    return {"name": "windows", "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _scaling_suite() -> dict:
    """One row per scaled column: its mean/std over the training split after scaling."""
    ex = [
        _exp("expect_table_row_count_to_equal", value={"$PARAMETER": "n_rows"}),
        _exp("expect_column_values_to_be_unique", column="column"),
        _exp("expect_column_values_to_not_be_null", column="train_mean"),
        _exp("expect_column_values_to_be_between", column="train_mean", min_value=-1e-3, max_value=1e-3),
        _when(_exp("expect_column_values_to_be_between", column="train_std", min_value=0.999, max_value=1.001),
              "constant", False),
        _when(_exp("expect_column_values_to_be_between", column="train_std", min_value=0.0, max_value=0.0),
              "constant", True),
    ]
    return {"name": "windows_scaling", "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _static_suite() -> dict:
    ex = [
        _exp("expect_table_row_count_to_equal", value={"$PARAMETER": "n_rows"}),
        _exp("expect_column_values_to_be_unique", column="band"),
        _exp("expect_column_values_to_be_between", column="band", min_value=0,
             max_value={"$PARAMETER": "max_band"}),
        _exp("expect_column_values_to_be_between", column="lithology_total", min_value=0.999, max_value=1.001),
    ]
    for c in TEXTURE:
        ex += [_exp("expect_column_values_to_not_be_null", column=c), _range(c, 0.0, 100.0)]
    ex.append(_exp("expect_column_values_to_be_between", column="texture_total", min_value=95.0,
                   max_value=105.0))
    for i in range(1, 5):
        ex += [
            _exp("expect_column_values_to_not_be_null", column=f"oc_l{i}_g_kg"),
            _range(f"oc_l{i}_g_kg", 0.0, 600.0),
            _range(f"bulk_density_l{i}_kg_m3", 100.0, 2000.0),
        ]
    ex.append(_exp("expect_column_values_to_not_be_null", column="lithology_unknown"))
    return {"name": "static_bands", "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _cells_suite(variables: tuple[str, ...]) -> dict:
    """One row per land cell: the statics' checks of the band table, its coordinates, and each variable's range
    over the period (the variable's valid range) and missing months (none)."""
    ex = [e for e in _static_suite()["expectations"] if e["kwargs"].get("column") != "band"]
    ex += [
        _exp("expect_column_values_to_be_unique", column="cell"),
        _exp("expect_column_values_to_be_between", column="band", min_value=0, max_value={"$PARAMETER": "max_band"}),
        _range("lat", -90.0, 90.0),
        _range("lon", -180.0, 180.0),
        _exp("expect_column_values_to_be_in_set", column="held_out", value_set=[0, 1]),
        _exp("expect_column_mean_to_be_between", column="held_out", min_value={"$PARAMETER": "min_held_out"},
             max_value={"$PARAMETER": "max_held_out"}),
    ]
    for v, var in INVARIANTS.items():  # where the raw stage has ERA5-Land's invariant file
        ex += [{**e, "meta": {"optional_variable": v}} for e in
               (_exp("expect_column_values_to_not_be_null", column=v), _range(v, *var.valid_range))]
    for v in variables:
        lo, hi = VARIABLES[v].valid_range
        ex += _per_variable(v, [_exp("expect_column_values_to_be_between", column=f"{v}__missing", min_value=0,
                                     max_value=0),
                                _range(f"{v}__min", lo, hi), _range(f"{v}__max", lo, hi)])
    return {"name": "cells", "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _cell_scores_suite() -> dict:
    """One row per model, cell and layer of the cells' test scores: every cell scored, scores in range."""
    ex = [
        _exp("expect_table_row_count_to_equal", value={"$PARAMETER": "n_rows"}),
        _exp("expect_compound_columns_to_be_unique", column_list=["model", "cell", "layer"]),
        _exp("expect_column_values_to_be_in_set", column="layer", value_set=list(TARGETS)),
        _exp("expect_column_values_to_be_between", column="band", min_value=0, max_value={"$PARAMETER": "max_band"}),
        _exp("expect_column_values_to_be_in_set", column="held_out", value_set=[0, 1]),
        *(_exp("expect_column_values_to_not_be_null", column=c) for c in ("rmse", "mae")),
        _exp("expect_column_values_to_be_between", column="rmse", min_value=0.0, max_value=50.0),
        _exp("expect_column_values_to_be_between", column="mae", min_value=0.0, max_value=50.0),
        _exp("expect_column_values_to_be_between", column="r2", max_value=1.0),
    ]
    return {"name": "cell_scores", "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def _cell_projections_suite() -> dict:
    """One row per model, scenario, period and projected cell: the products in their physical ranges."""
    lo, hi = VARIABLES[TARGETS[0]].valid_range
    ex = [
        _exp("expect_table_row_count_to_equal", value={"$PARAMETER": "n_rows"}),
        _exp("expect_compound_columns_to_be_unique", column_list=["model", "scenario", "period", "cell"]),
        *(_exp("expect_column_values_to_not_be_null", column=c) for c in ("alt", "permafrost", *TARGETS)),
        _range("alt", 0.0, 194.5),
        _range("alt_lower_bound_share", 0.0, 1.0),
        _exp("expect_column_values_to_be_in_set", column="permafrost", value_set=[0, 1]),
        *(_range(t, lo, hi) for t in TARGETS),
    ]
    return {"name": "cell_projections", "expectations": ex, "meta": {"generated_by": "thawcast.quality.suites"}}


def build_suites() -> dict[str, dict]:
    """Every suite, by name (the JSON file stem in ``expectations/``)."""
    dyn = ERA5_FEATURES + TARGETS
    return {
        "raw_era5land": _grid_summary_suite("raw_era5land", ERA5_RAW, None),
        "raw_cmip5": _grid_summary_suite("raw_cmip5", CMIP5_CANONICAL, "experiment"),
        "static_bands": _static_suite(),
        "cells": _cells_suite(dyn),
        "cell_scores": _cell_scores_suite(),
        "cell_projections": _cell_projections_suite(),
        "bands_era5land": _band_table_suite("bands_era5land", dyn, None),
        "bands_cmip5": _band_table_suite("bands_cmip5", CMIP5_CANONICAL, "experiment"),
        "scenarios": _band_table_suite("scenarios", ERA5_FEATURES, "scenario", span=True),
        "windows": _windows_suite(),
        "windows_scaling": _scaling_suite(),
    }


def write_suites(folder: Path) -> list[Path]:
    """(Re)write the JSON suites into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, suite in build_suites().items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(suite, indent=2) + "\n")
        out.append(path)
    return out


# ---------------------------------------------------------------- validation frames
def _months_between(times: pd.Series) -> pd.Series:
    t = pd.to_datetime(times)
    idx = t.dt.year * 12 + t.dt.month
    return idx.diff().fillna(1).astype(int)


def grid_summary(ds: xr.Dataset, source_file: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per-month min/max and missing-on-land count of each variable of one raw file, and each variable's
    ``[lat, lon]`` land mask.

    A land cell is one with data in at least one month of the file; NaN there in other
    months is a fill-value problem. Streams over the file's time chunks.
    """
    import dask

    stats, masks = {}, {}
    for v in ds.data_vars:
        da = ds[v]
        land = da.notnull().any("time")
        masks[v] = land.transpose("lat", "lon")
        stats[f"{v}__min"] = da.min(("lat", "lon"))
        stats[f"{v}__max"] = da.max(("lat", "lon"))
        stats[f"{v}__nan_land"] = (da.isnull() & land).sum(("lat", "lon"))
    computed, land_masks = dask.compute(stats, masks)
    frame = pd.DataFrame({k: np.asarray(val) for k, val in computed.items()})
    frame.insert(0, "time", pd.DatetimeIndex(ds["time"].values).strftime("%Y-%m"))
    frame.insert(1, "source_file", source_file)
    for v in ds.data_vars:
        frame[f"{v}__units"] = ds[v].attrs.get("units", "")
    return frame, {v: np.asarray(m) for v, m in land_masks.items()}


def finish_summary(frame: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Sort a concatenation of per-file summaries and add the month-step column."""
    keys = ([group] if group else []) + ["time"]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    if group:
        frame["dt_months"] = frame.groupby(group)["time"].transform(_months_between)
    else:
        frame["dt_months"] = _months_between(frame["time"])
    return frame


def band_table_frame(ds: xr.Dataset, group: str | None = None) -> pd.DataFrame:
    """Long table (``[group,] band, time`` + variables + units columns) of a band dataset."""
    dims = ([group] if group else []) + ["band", "time"]
    frame = ds.drop_vars([c for c in ds.coords if c not in dims]).to_dataframe().reset_index()
    frame["time"] = pd.to_datetime(frame["time"]).dt.strftime("%Y-%m")
    by = ([group] if group else []) + ["band"]
    frame["dt_months"] = frame.groupby(by)["time"].transform(_months_between)
    for v in ds.data_vars:
        frame[f"{v}__units"] = ds[v].attrs.get("units", "")
    return frame
