"""Stage ``static``: per-band static features under ``data/static/``.

Real HWSD topsoil texture and organic carbon (from the ``permamodel`` package) with
per-layer organic carbon and bulk density derived as documented in
:mod:`thawcast.prep.soil`, plus lithology shares from ``data/raw/static/lithology.nc``
(synthetic by default; all ``unknown`` when no lithology raster is given).
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import xarray as xr

from thawcast.catalogue import LITHOLOGY_CLASSES, STATIC_UNITS, TEXTURE
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf
from thawcast.ingest.hwsd import open_hwsd, open_lithology, unknown_lithology
from thawcast.layout import Layout
from thawcast.prep.geometry import BandGeometry
from thawcast.prep.soil import static_band_table
from thawcast.quality.provenance import is_synthetic, provenance, staged_output
from thawcast.quality.validation import run_suite, validate_stage

log = logging.getLogger(__name__)

def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    geom = BandGeometry.from_config(cfg.study_area)
    edges = cfg.study_area.band_edges
    hwsd = open_hwsd((edges[0], edges[-1]), (cfg.study_area.lon_min, cfg.study_area.lon_max))
    lith_path = paths.raw / "static" / "lithology.nc"
    if lith_path.exists():
        codes = open_lithology(lith_path)
        synthetic_lith = is_synthetic(open_netcdf(lith_path).attrs)
        table = static_band_table(hwsd, codes, geom, cfg.static, "HWSD (permamodel)", str(lith_path))
    else:
        log.warning("no lithology raster: every band gets lithology_unknown = 1")
        synthetic_lith = False
        codes = None
        table = static_band_table(hwsd, unknown_lithology(hwsd), geom, cfg.static, "HWSD (permamodel)")
    frame = table.reset_index()
    frame["lithology_total"] = frame[[f"lithology_{c}" for c in LITHOLOGY_CLASSES]].sum(axis=1)
    frame["texture_total"] = frame[list(TEXTURE)].sum(axis=1)
    section = run_suite(frame, "static_bands", paths.expectations,
                        parameters={"n_rows": geom.n_bands, "max_band": geom.n_bands - 1}, index_columns=["band"])
    with staged_output(paths.static) as tmp:
        validate_stage("static", [section], paths.validation_reports)
        ds = xr.Dataset.from_dataframe(table)
        for c in ds.data_vars:
            ds[c].attrs = {"units": STATIC_UNITS[c], "long_name": c.replace("_", " ")}
        ds.attrs = provenance(
            "static",
            "area-weighted band means (cos-lat x land overlap); OC per layer: exponential profile"
            f" (e-folding {cfg.static.oc_efold_depth_m} m) matched to HWSD topsoil; bulk density: Adams"
            f" (1973) with mineral BD {cfg.static.mineral_bulk_density_kg_m3} kg m-3",
            [f"HWSD v1.2 topsoil grids (permamodel {version('permamodel')} package data)", str(lith_path) if codes is not None else "no lithology"],
            synthetic=synthetic_lith,
            lithology_synthetic=str(synthetic_lith).lower(),
            hwsd_note="texture and organic carbon are REAL HWSD data",
        )
        ds.to_netcdf(tmp / paths.static_table.name)
        table.to_csv(tmp / "static_bands.csv", float_format="%.6g")
    return paths.static
