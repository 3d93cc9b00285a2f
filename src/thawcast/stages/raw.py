"""Stage ``raw``: the raw ERA5-Land, CMIP5 and static inputs under ``data/raw/``.

``source.kind: synthetic`` (default) generates the embedded synthetic Alaska in the real
file formats; ``source.kind: files`` ingests the user's downloads from
``source.era5land_dir`` / ``source.cmip5_dir`` (and ``source.lithology_file``). Either way
the files are read back through the real readers and validated before ``data/raw`` is
replaced. ERA5-Land's invariant geopotential (synthetic, or ``source.geopotential_file``) goes to
``data/raw/static/era5land_geopotential.nc`` and must give a height to every land cell of the monthly grid.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.ingest.cmip5 import find_cmip5_files, folder_holds, open_cmip5
from thawcast.ingest.era5land import (
    check_complete,
    elevation_at,
    list_netcdf,
    open_elevation,
    open_era5land_file,
)
from thawcast.ingest.hwsd import open_lithology
from thawcast.layout import Layout
from thawcast.prep.geometry import BandGeometry, band_weights, check_holes
from thawcast.quality.provenance import staged_output
from thawcast.quality.suites import finish_summary, grid_summary
from thawcast.quality.validation import run_suite, validate_stage
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)


#: Where the raw stage puts the ERA5-Land invariant geopotential, inside ``data/raw`` (:attr:`Layout.geopotential`).
GEOPOTENTIAL = Layout.at(".").geopotential.relative_to(Layout.at(".").raw)


def _generate(cfg: Config, tmp: Path, state_file: str) -> None:
    from thawcast.ingest.synthetic.world import (
        simulate_era5land,
        write_cmip5,
        write_era5land,
        write_geopotential,
        write_lithology,
        write_soil_state,
    )

    era_rng, cmip_rng, lith_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3))
    end_state = []
    ds = simulate_era5land(cfg, era_rng, end_state)
    files = write_era5land(ds, tmp / "era5land")
    log.info("wrote %d synthetic ERA5-Land files", len(files))
    write_soil_state(end_state[0], tmp / state_file)
    files = write_cmip5(cfg, tmp / "cmip5", cmip_rng)
    log.info("wrote %d synthetic CMIP5 files", len(files))
    write_lithology(cfg, tmp / "static" / "lithology.nc", lith_rng)
    write_geopotential(cfg, tmp / GEOPOTENTIAL)


def _ingest(cfg: Config, tmp: Path) -> dict[Path, Path]:
    """Copy the user's files into ``tmp``; return each copy (and copied folder) -> the user's original."""
    src = cfg.source
    era = list_netcdf(src.era5land_dir)
    origins = {tmp / "era5land": Path(src.era5land_dir), tmp / "cmip5": Path(src.cmip5_dir)}
    (tmp / "era5land").mkdir()
    for f in era:
        shutil.copy2(f, tmp / "era5land" / f.name)
        origins[tmp / "era5land" / f.name] = Path(f)
    (tmp / "cmip5").mkdir()
    n = 0
    for exp in cfg.cmip5.experiments:
        for paths in find_cmip5_files(src.cmip5_dir, cfg.cmip5.model, exp, cfg.cmip5.ensemble).values():
            for p in paths:
                shutil.copy2(p, tmp / "cmip5" / p.name)
                origins[tmp / "cmip5" / p.name] = Path(p)
                n += 1
    if n == 0:
        raise DataError(src.cmip5_dir, f"no {cfg.cmip5.model} {cfg.cmip5.ensemble} CMIP5 files of"
                        f" {', '.join(cfg.cmip5.experiments)} found; {folder_holds(src.cmip5_dir)}")
    for given, copy, what in ((src.lithology_file, Path("static") / "lithology.nc", "lithology"),
                              (src.geopotential_file, GEOPOTENTIAL, "geopotential")):
        if given is not None:
            if not Path(given).is_file():
                raise DataError(given, f"{what} file not found (source.{what}_file in params.yaml: a file's path,"
                                " or null)")
            (tmp / copy).parent.mkdir(exist_ok=True)
            shutil.copy2(given, tmp / copy)
            origins[tmp / copy] = Path(given)
    log.info("ingested %d ERA5-Land and %d CMIP5 files", len(era), n)
    return origins


def _by_origin(exc: DataError, origins: dict[Path, Path]) -> DataError:
    """``exc`` naming the user's file instead of its copy in the staging folder (gone when they read it)."""
    problem = exc.problem
    # each copy as an absolute path first (a reader may have made it absolute, following symlinks or not), then as
    # the stage named it
    names = {str(form): str(original) for copy, original in origins.items()
             for form in (copy.resolve(), Path(os.path.abspath(copy)), copy)}
    for copy in sorted(names, key=len, reverse=True):
        problem = problem.replace(copy, names[copy])
    return DataError(names.get(str(exc.path), exc.path), problem)


def _check_coverage(land: dict[str, np.ndarray], weights: xr.DataArray, geom: BandGeometry, source: Path,
                    of: str = "") -> None:
    """Every variable has data on the bands' land wherever data surround it (the sea and small lakes excepted)."""
    for v, mask in land.items():
        check_holes(mask, weights, geom, str(source), what=f"'{v}'{of}")


def validation_sections(cfg: Config, raw_dir: Path, suite_dir: Path) -> list[dict]:
    """Read every raw file back through the readers, check that each grid covers the study area without holes,
    and run the raw suites."""
    geom = BandGeometry.from_config(cfg.study_area)
    era, weights, held, land_points = [], {}, {}, None
    for f in list_netcdf(raw_dir / "era5land"):
        ds = open_era5land_file(f, chunks={"time": 12}).load()  # one file in memory: 5x faster than dask here
        held[f] = (pd.DatetimeIndex(ds["time"].values), list(ds.data_vars))
        grid = (ds["lat"].values.tobytes(), ds["lon"].values.tobytes())
        if grid not in weights:  # one grid in a sound download; another one is checked (and refused) on its own
            weights[grid] = band_weights(ds["lat"].values, ds["lon"].values, geom, source=str(f))
        summary, land = grid_summary(ds, f.name)
        _check_coverage(land, weights[grid], geom, f)
        if land_points is None and TARGETS[0] in land:
            rows, cols = np.nonzero(land[TARGETS[0]])
            land_points = ds["lat"].values[rows], ds["lon"].values[cols]
        era.append(summary)
    check_complete(held)
    if (raw_dir / GEOPOTENTIAL).exists() and land_points is not None:  # a height for every land cell
        elevation_at(open_elevation(raw_dir / GEOPOTENTIAL, land_points), *land_points, raw_dir / GEOPOTENTIAL)
    lithology = raw_dir / "static" / "lithology.nc"
    if lithology.exists():  # read by the static stage; its coverage is checked here, where the user's file is named
        codes = open_lithology(lithology)
        check_holes(codes.notnull().values, band_weights(codes["lat"].values, codes["lon"].values, geom,
                                                         source=str(lithology)), geom, str(lithology), "lithology")
    era_frame = finish_summary(pd.concat(era, ignore_index=True))
    cmip = []
    for exp in cfg.cmip5.experiments:
        ds = open_cmip5(raw_dir / "cmip5", exp, cfg.cmip5.model, cfg.cmip5.ensemble).load()
        where = raw_dir / "cmip5"
        summary, land = grid_summary(ds, f"{cfg.cmip5.model}_{exp}")
        _check_coverage(land, band_weights(ds["lat"].values, ds["lon"].values, geom, source=str(where)), geom, where,
                        f" of {cfg.cmip5.model} {exp}")
        summary.insert(0, "experiment", exp)
        cmip.append(summary)
    cmip_frame = finish_summary(pd.concat(cmip, ignore_index=True), group="experiment")
    return [
        run_suite(era_frame, "raw_era5land", suite_dir, index_columns=["source_file", "time"]),
        run_suite(cmip_frame, "raw_cmip5", suite_dir, parameters={"experiments": list(cfg.cmip5.experiments)},
                  index_columns=["experiment", "time"]),
    ]


def run(cfg: Config, paths: Layout | None = None) -> Path:
    """Produce and validate ``data/raw`` (replaced only if everything passes)."""
    paths = paths or Layout.at()
    with staged_output(paths.raw) as tmp:
        if cfg.source.kind == "synthetic":
            _generate(cfg, tmp, paths.soil_state.name)
            origins = {}
        else:
            origins = _ingest(cfg, tmp)
        try:
            sections = validation_sections(cfg, tmp, paths.expectations)
        except DataError as exc:
            raise _by_origin(exc, origins) from None
        validate_stage("raw", sections, paths.validation_reports)
    return paths.raw
