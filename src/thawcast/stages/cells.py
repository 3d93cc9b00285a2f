"""Stage ``cells``: every land cell of the ERA5-Land grid as a unit, under ``data/cells/`` (issue "Every grid
cell": its data; the models do not read it yet).

A unit is a land cell with soil temperatures, its centre in a band and the study longitudes, and some HWSD soil
(the cells HWSD marks as water, ice or rock are left out, with a warning that counts them).

* ``cells.nc``: ``values [cell, time, variable]`` (float32) over ``period``: every ERA5-Land driver the files
  hold and the 4 soil temperatures, with each cell's ``lat``, ``lon``, ``band`` and ``area_km2``.
  Built chunk by chunk (:mod:`thawcast.prep.cells`): memory holds a few years of the land cells, not the grid.
  dask reads the chunks on its threads here, or on the workers of a dask.distributed cluster
  (``compute.scheduler``: ``local`` or a scheduler's address); the same bytes either way.
* ``static_cells.nc`` / ``static_cells.csv``: per cell, the band table's statics (HWSD texture and organic
  carbon, per-layer organic carbon and bulk density, lithology shares), its latitude and longitude, its height
  (``elevation_m``, from ERA5-Land's invariant geopotential where the raw stage has one), and ``held_out``:
  whether it is in the spatial hold-out (``cells`` in params.yaml).

Great Expectations checks one row per cell: its statics, and each variable's range over the period and its
missing months (none).
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import CELL_ATTRIBUTES, LITHOLOGY_CLASSES, STATIC_UNITS, TEXTURE
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf, select_years
from thawcast.ingest.era5land import elevation_at, open_elevation, open_era5land
from thawcast.ingest.hwsd import open_hwsd, open_lithology, unknown_lithology
from thawcast.layout import Layout
from thawcast.parallel import dask_client
from thawcast.prep.cells import (
    cell_store,
    holdout_blocks,
    land_cells,
    static_cell_table,
    with_soil,
    write_cell_store,
)
from thawcast.prep.geometry import BandGeometry
from thawcast.quality.provenance import is_synthetic, provenance, staged_output
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.variables import ERA5_FEATURES, TARGETS

log = logging.getLogger(__name__)


def store_variables(have) -> tuple[str, ...]:
    """Every ERA5-Land driver the files hold (snow only when given), then the targets: like the band tables, the
    store does not depend on which ones ``features`` selects."""
    return tuple(n for n in ERA5_FEATURES if n in have) + TARGETS


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    # A client made here is dask's default scheduler inside the block: every read below runs on its workers.
    with dask_client(cfg.compute.scheduler, cfg.compute.processes) as client:
        if client is not None:
            log.info("dask: %s", client)
        return _build(cfg, paths)


def _build(cfg: Config, paths: Layout) -> Path:
    geom = BandGeometry.from_config(cfg.study_area)
    era_dir = paths.raw / "era5land"
    era = select_years(open_era5land(era_dir), cfg.period.start_year, cfg.period.end_year, str(era_dir))
    valid = era[list(TARGETS)].to_array().notnull().all(("variable", "time")).rename("ERA5-Land soil temperature")
    edges = cfg.study_area.band_edges
    hwsd = open_hwsd((edges[0], edges[-1]), (cfg.study_area.lon_min, cfg.study_area.lon_max))
    cells = with_soil(hwsd, land_cells(valid.compute(), geom))
    log.info("%d land cells with soil (%d x %d grid)", len(cells), cells.grid_lat.size, cells.grid_lon.size)
    lith_path = paths.raw / "static" / "lithology.nc"
    codes = open_lithology(lith_path) if lith_path.exists() else unknown_lithology(hwsd)
    table = static_cell_table(hwsd, codes, cells, cfg.static)
    if paths.geopotential.exists():
        height = open_elevation(paths.geopotential, (cells.lat, cells.lon))
        table["elevation_m"] = elevation_at(height, cells.lat, cells.lon, paths.geopotential)
    else:
        log.info("no ERA5-Land geopotential in %s: the cells have no elevation_m", paths.geopotential.parent)
    held_out = holdout_blocks(cells, cfg.cells.holdout_block_deg, cfg.cells.holdout_share, cfg.seed)
    log.info("spatial hold-out: %d of %d cells (%.1f%%) in blocks of %s x %s degrees", held_out.sum(), len(cells),
             100 * held_out.mean(), *cfg.cells.holdout_block_deg)
    store = cell_store(era, cells, store_variables(era))
    store = store.assign_coords(area_km2=("cell", cells.area_km2))
    store["values"].attrs = {"long_name": "monthly ERA5-Land drivers and soil temperatures of the land cells",
                             "units": "per variable: README \"Features\" (canonical units)"}
    store.attrs = provenance("cells", "the land cells of the ERA5-Land grid (soil temperature in every month, centre"
                             " in a band and the study longitudes), selected point-wise chunk by chunk",
                             era.attrs.get("source_files", str(era_dir)), synthetic=is_synthetic(era.attrs))
    with staged_output(paths.cells) as tmp:
        log.info("writing the [cell, time, variable] store: %d cells x %d months x %d variables",
                 len(cells), store.sizes["time"], store.sizes["variable"])
        summary = write_cell_store(store, tmp / paths.cell_store.name)
        frame = _validation_frame(table, cells.band, summary)
        frame["held_out"] = held_out.astype(np.int8)
        section = run_suite(frame, "cells", paths.expectations,
                            parameters={"n_rows": len(cells), "max_band": geom.n_bands - 1,
                                        # some cells held out, some not
                                        "min_held_out": 1 / len(cells), "max_held_out": 1 - 1 / len(cells)},
                            index_columns=["cell"])
        validate_stage("cells", [section], paths.validation_reports)
        _write_static(table.assign(held_out=held_out.astype(np.int8)), cells, tmp / paths.static_cells.name,
                      lith_path if lith_path.exists() else None,
                      paths.geopotential if "elevation_m" in table else None)
    return paths.cells


def _validation_frame(table: pd.DataFrame, band, summary: xr.Dataset) -> pd.DataFrame:
    """One row per cell: its statics, band, and per variable its minimum, maximum and missing months."""
    frame = table.reset_index()
    frame["band"] = band
    frame["lithology_total"] = frame[[f"lithology_{c}" for c in LITHOLOGY_CLASSES]].sum(axis=1)
    frame["texture_total"] = frame[list(TEXTURE)].sum(axis=1)
    for name in summary["variable"].values:
        for stat in ("min", "max", "missing"):
            frame[f"{name}__{stat}"] = summary[stat].sel(variable=name).values
    return frame


def _synthetic(source: Path | None) -> bool:
    """Whether the raw file ``source`` (none: no) says it is synthetic."""
    if source is None:
        return False
    with open_netcdf(source) as ds:
        return is_synthetic(ds.attrs)


def _write_static(table: pd.DataFrame, cells, path: Path, lith_path: Path | None, geo_path: Path | None) -> None:
    ds = xr.Dataset.from_dataframe(table.drop(columns=["lat", "lon"])).assign_coords(cells.coords())
    for c in ds.data_vars:
        known = CELL_ATTRIBUTES.get(c)
        ds[c].attrs = ({"units": known.unit, "long_name": known.description} if known else
                       {"units": STATIC_UNITS.get(c, "1"), "long_name": c.replace("_", " ")})
    ds["held_out"].attrs["long_name"] = ("1: in the spatial hold-out (never to reach training, tuning or scaling;"
                                         " scored on the test years)")
    lith_synthetic, geo_synthetic = _synthetic(lith_path), _synthetic(geo_path)
    ds.attrs = provenance(
        "cells", "per land cell: cos-latitude-weighted mean of the HWSD pixels and lithology raster cells whose"
        " centres fall in the cell; per-layer organic carbon and bulk density as for the bands (README \"Static\");"
        " the height at the cell's centre from ERA5-Land's invariant geopotential / 9.80665 m s-2",
        [f"HWSD v1.2 topsoil grids (permamodel {version('permamodel')} package data)",
         str(lith_path) if lith_path else "no lithology", str(geo_path) if geo_path else "no geopotential"],
        synthetic=lith_synthetic or geo_synthetic, lithology_synthetic=str(lith_synthetic).lower(),
        elevation_synthetic=str(geo_synthetic).lower(), hwsd_note="texture and organic carbon are REAL HWSD data")
    ds.to_netcdf(path)
    table.to_csv(path.with_suffix(".csv"), float_format="%.6g")
