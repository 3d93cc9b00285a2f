"""Stage ``bands``: per-band monthly tables under ``data/bands/``.

* ``era5land_bands.nc``: dims ``band, time`` over ``period``; the 12 dynamic features and
  the 4 soil temperatures (targets), canonical units.
* ``cmip5_<experiment>.nc``: dims ``band, time`` over each experiment's full span.
* ``metrics/bands.json``: each band's mean ERA5-Land soil temperature per layer over ``period``
  (the calibration figures the README quotes, layer 1 against the paper's).

Band means are area-weighted over each band's land (see :mod:`thawcast.prep.geometry`) and
computed chunk by chunk with dask, so the full 0.1 degree ERA5-Land cube streams in
bounded memory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import xarray as xr

from thawcast.config import Config
from thawcast.ingest.cmip5 import open_cmip5
from thawcast.ingest.common import select_years
from thawcast.ingest.era5land import open_era5land
from thawcast.layout import Layout
from thawcast.parallel import dask_client
from thawcast.prep.aggregate import band_means, compute_streaming
from thawcast.prep.features import require
from thawcast.prep.geometry import BandGeometry
from thawcast.quality.provenance import is_synthetic, provenance, staged_output
from thawcast.quality.suites import band_table_frame
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.variables import TARGETS, VARIABLES

log = logging.getLogger(__name__)

METHOD = "area-weighted band mean: cell area (cos lat) x fraction of the cell on the band's land"


def _compute(ds: xr.Dataset, label: str, client) -> xr.Dataset:
    log.info("aggregating %s (%d months, %d variables)", label, ds.sizes["time"], len(ds.data_vars))
    return compute_streaming(ds, client=client)


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    raw_dir = paths.raw
    geom = BandGeometry.from_config(cfg.study_area)
    era_dir = raw_dir / "era5land"
    era = open_era5land(era_dir)
    require(cfg.feature_names, era, "era5", str(era_dir))
    era = select_years(era, cfg.period.start_year, cfg.period.end_year, str(era_dir))
    cmip = {}
    with dask_client(cfg.compute.scheduler, cfg.compute.processes) as client:
        if client is not None:
            log.info("dask: %s", client)
        era_b = _compute(band_means(era, geom, source=str(era_dir)), "ERA5-Land", client)
        for exp in cfg.cmip5.experiments:
            # A few MB on the coarse GCM grid: in memory, the band means take a second (streamed in 12-month
            # chunks, the task overhead made it 30 s per experiment to 2100); the same bits either way.
            ds = open_cmip5(raw_dir / "cmip5", exp, cfg.cmip5.model, cfg.cmip5.ensemble).load()
            require(cfg.feature_names, ds, "cmip5", f"{raw_dir / 'cmip5'} ({cfg.cmip5.model} {exp})")
            log.info("aggregating CMIP5 %s (%d months, %d variables)", exp, ds.sizes["time"], len(ds.data_vars))
            out = band_means(ds, geom, source=f"{raw_dir / 'cmip5'} ({exp})")
            out.attrs = provenance("bands", METHOD, ds.attrs["source_files"], synthetic=is_synthetic(ds.attrs),
                                   model_id=cfg.cmip5.model, experiment_id=exp, ensemble=cfg.cmip5.ensemble,
                                   calendar_note="CMIP months mapped to month starts (365_day calendar)")
            cmip[exp] = out
    cmip = _common_optional(cmip)
    era_b.attrs = provenance("bands", METHOD, era.attrs.get("source_files", str(era_dir)),
                             synthetic=is_synthetic(era.attrs), source_format=era.attrs.get("source_format", ""))

    era_frame = band_table_frame(era_b)
    cmip_frame = pd.concat(
        [band_table_frame(d.expand_dims(experiment=[e]), group="experiment") for e, d in cmip.items()],
        ignore_index=True,
    )
    n_cmip_rows = sum(d.sizes["band"] * d.sizes["time"] for d in cmip.values())
    sections = [
        run_suite(era_frame, "bands_era5land", paths.expectations,
                  parameters={"n_rows": geom.n_bands * cfg.period.n_months, "max_band": geom.n_bands - 1},
                  index_columns=["band", "time"]),
        run_suite(cmip_frame, "bands_cmip5", paths.expectations,
                  parameters={"n_rows": n_cmip_rows, "max_band": geom.n_bands - 1,
                              "experiments": list(cfg.cmip5.experiments)},
                  index_columns=["experiment", "band", "time"]),
    ]
    with staged_output(paths.bands) as tmp:
        validate_stage("bands", sections, paths.validation_reports)
        era_b.to_netcdf(tmp / paths.era5_bands.name)
        for exp, ds in cmip.items():
            ds.to_netcdf(tmp / paths.cmip5_bands(exp).name)
        _write_calibration(era_b, cfg, paths.metric("bands.json"))
    return paths.bands


def _common_optional(cmip: dict[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    """The experiments' tables with only the optional variables (snow) every experiment has: a scenario is
    corrected against the spliced historical run, so a variable one of them lacks is of no use (:func:`require`
    already refused one the features need)."""
    partial = {v for ds in cmip.values() for v in ds.data_vars if VARIABLES[v].optional} - set.intersection(
        *({v for v in ds.data_vars if VARIABLES[v].optional} for ds in cmip.values()))
    if partial:
        log.warning("CMIP5 %s: only some experiments have it, so it is left out of every experiment",
                    sorted(partial))
    return {e: ds.drop_vars(sorted(partial), errors="ignore") for e, ds in cmip.items()}


def _write_calibration(era_b: xr.Dataset, cfg: Config, path: Path) -> None:
    """Band means of the soil temperatures over the whole period, degC, rounded to 0.0001."""
    labels = cfg.study_area.band_labels
    table = {"period": f"{cfg.period.start_year}-{cfg.period.end_year}", "units": VARIABLES[TARGETS[0]].unit,
             "synthetic": is_synthetic(era_b.attrs),
             "soil_temperature_band_means": {
                 v: {labels[int(b)]: round(float(era_b[v].sel(band=b).mean("time")), 4) for b in era_b["band"].values}
                 for v in TARGETS}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
