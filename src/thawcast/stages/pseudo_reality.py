"""Stage ``pseudo-reality``: the synthetic world continued under each RCP, the perfect-model truth.

Synthetic mode only (``perfect_model.enabled``). The synthetic ERA5-Land world of the ``raw``
stage goes on after ``period`` to ``synthetic.scenario_end_year`` under each RCP's warming path,
with its own weather (independent of the synthetic GCM's, as real weather is) and its soil
columns continuing from where the record ends (``data/raw/soil_state.nc``). Its soil runs on
every ``perfect_model.stride``-th grid row and column; the other cells are missing.

Outputs: ``data/pseudo_reality/<rcp>/era5land_monthly_<first>-<last>.nc`` (ten years each) in the
ERA5-Land format, each
file flagged ``thawcast_pseudo_reality = "true"``. Only the ``perfect-model`` and ``project-cells`` stages
(to score against it) and the report read them: no network training, scaler, bias correction or tuning ever sees
this truth. With real files
(or ``perfect_model.enabled: false``) the folder holds a note saying why it is empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.ingest.era5land import open_era5land, open_era5land_file, with_snow_depth
from thawcast.layout import Layout
from thawcast.prep.aggregate import band_means
from thawcast.prep.geometry import BandGeometry
from thawcast.quality.provenance import provenance, staged_output
from thawcast.quality.suites import band_table_frame, finish_summary, grid_summary
from thawcast.quality.validation import run_suite, validate_stage

log = logging.getLogger(__name__)

#: What the folder holds when the experiment does not run.
SKIPPED_NOTE = "SKIPPED.txt"

METHOD = "area-weighted band mean over the cells the pseudo-reality simulates (see the bands stage)"


def run(cfg: Config, paths: Layout | None = None) -> Path:
    from thawcast.ingest.synthetic.world import (
        read_soil_state,
        simulate_pseudo_reality,
        write_era5land,
    )

    paths = paths or Layout.at()
    with staged_output(paths.pseudo_reality) as tmp:
        if (why := cfg.perfect_model_off) is not None:
            (tmp / SKIPPED_NOTE).write_text(f"No pseudo-reality: {why}.\n")
            log.info("pseudo-reality skipped: %s", why)
            return paths.pseudo_reality
        if not paths.soil_state.exists():
            raise DataError(paths.soil_state, "the synthetic soil state is missing (run the raw stage)")
        state = read_soil_state(paths.soil_state)
        geom = BandGeometry.from_config(cfg.study_area)
        seed = np.random.SeedSequence(cfg.seed).spawn(4)[3]  # raw uses the first three
        sections, cells = [], None
        for rcp in cfg.rcp_experiments:  # one weather for every RCP, as in the synthetic GCM
            truth = simulate_pseudo_reality(cfg, np.random.default_rng(seed), state, rcp)
            files = write_era5land(truth, tmp / rcp, title=f"SYNTHETIC pseudo-reality: the synthetic ERA5-Land"
                                   f" world continued under {rcp} (thawcast perfect-model truth)",
                                   thawcast_pseudo_reality="true", experiment_id=rcp,
                                   pseudo_reality_stride=cfg.perfect_model.stride, years_per_file=10)
            open_era5land_file(files[0])  # the format reads back (the reader checks names, units and months)
            summary, _ = grid_summary(truth, rcp)
            sections.append(run_suite(finish_summary(summary), "raw_era5land", paths.expectations,
                                      index_columns=["source_file", "time"]))
            cells = truth["t_air"].isel(time=0).notnull().values if cells is None else cells
            # named by where the files end up: a staging folder's name (with its process id) would make the
            # output differ from build to build
            _write_bands(with_snow_depth(truth), geom, tmp / paths.pseudo_bands(rcp).name, str(paths.pseudo_reality / rcp), synthetic=True,
                         thawcast_pseudo_reality="true", experiment_id=rcp)
            log.info("pseudo-reality %s: wrote %d files and the band means", rcp, len(files))
        era_dir = paths.raw / "era5land"
        era = open_era5land(era_dir).sel(time=slice(f"{cfg.period.start_year}", f"{cfg.period.end_year}")).load()
        observed = _write_bands(era.where(xr.DataArray(cells, dims=("lat", "lon"))), geom, tmp / paths.pseudo_bands().name,
                                f"{era_dir} (the pseudo-reality's cells)", synthetic=True)
        sections.append(run_suite(band_table_frame(observed), "bands_era5land", paths.expectations,
                                  parameters={"n_rows": geom.n_bands * cfg.period.n_months,
                                              "max_band": geom.n_bands - 1}, index_columns=["band", "time"]))
        validate_stage("pseudo-reality", sections, paths.validation_reports)
    return paths.pseudo_reality


def _write_bands(ds, geom: BandGeometry, path: Path, source: str, synthetic: bool, **attrs):
    out = band_means(ds, geom, source=source)
    out.attrs = provenance("pseudo-reality", METHOD, source, synthetic=synthetic, **attrs)
    out.to_netcdf(path)
    return out
