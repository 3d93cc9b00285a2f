"""Grid cells as units (issue "Every grid cell", first part): which cells, their static attributes, and a
``[cell, time, variable]`` store of their monthly drivers and soil temperatures built chunk by chunk.

A unit is a land cell of the ERA5-Land grid: one whose soil temperatures are given (ERA5-Land's own land-sea
mask) and whose centre lies in a latitude band and the study longitudes. Its static attributes are what a
network sees instead of a unit id, so that a model trained on some cells applies to others: HWSD topsoil texture
and organic carbon averaged over the HWSD pixels whose centres fall in the cell, the derived per-layer organic
carbon and bulk density (:mod:`thawcast.prep.soil`), lithology shares in the cell, and the cell's latitude and
longitude.

The store streams: the readers give dask arrays of 12 months, each chunk keeps only the land cells (a point-wise
selection, no loop over cells) and goes to disk before the next is read, so memory holds a few chunks, never the
``[cell, time, variable]`` cube, let alone ``[N, 24, F]`` windows.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import LITHOLOGY_CLASSES, TEXTURE
from thawcast.config import StaticConfig
from thawcast.errors import DataError
from thawcast.prep.geometry import EARTH_RADIUS_KM, BandGeometry, cell_edges
from thawcast.prep.soil import adams_bulk_density, layer_mean_factor
from thawcast.variables import ERA5_LAYERS_M, TARGETS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cells:
    """The land cells of a regular grid, in row-major order of the grid (south to north, west to east).

    ``lat_index``/``lon_index`` locate each cell on the grid whose coordinates are ``grid_lat``/``grid_lon``;
    ``band`` is the latitude band of its centre and ``area_km2`` its area on the sphere.
    """

    grid_lat: np.ndarray
    grid_lon: np.ndarray
    lat_index: np.ndarray
    lon_index: np.ndarray
    band: np.ndarray

    def __len__(self) -> int:
        return len(self.lat_index)

    @property
    def lat(self) -> np.ndarray:
        return self.grid_lat[self.lat_index]

    @property
    def lon(self) -> np.ndarray:
        return self.grid_lon[self.lon_index]

    @property
    def area_km2(self) -> np.ndarray:
        """Area of each cell (km2): R^2 (sin(north) - sin(south)) (east - west) in radians."""
        lat_e, lon_e = cell_edges(self.grid_lat), cell_edges(self.grid_lon)
        south, north = np.deg2rad(lat_e[self.lat_index]), np.deg2rad(lat_e[self.lat_index + 1])
        width = np.deg2rad(lon_e[self.lon_index + 1] - lon_e[self.lon_index])
        return EARTH_RADIUS_KM ** 2 * (np.sin(north) - np.sin(south)) * width

    def subset(self, keep: np.ndarray) -> Cells:
        """The cells where ``keep`` (one bool per cell) is true, in the same order."""
        keep = np.asarray(keep, bool)
        return Cells(self.grid_lat, self.grid_lon, self.lat_index[keep], self.lon_index[keep], self.band[keep])

    def coords(self) -> dict[str, tuple[str, np.ndarray]]:
        """Per-cell coordinates for an xarray object with a ``cell`` dimension."""
        return {"cell": ("cell", np.arange(len(self))), "lat": ("cell", self.lat), "lon": ("cell", self.lon),
                "band": ("cell", self.band)}

    def select(self, da: xr.DataArray) -> xr.DataArray:
        """The land cells of a ``[..., lat, lon]`` array as ``[..., cell]`` (point-wise; dask stays lazy)."""
        if not (np.array_equal(da["lat"].values, self.grid_lat) and np.array_equal(da["lon"].values, self.grid_lon)):
            raise DataError(da.name, f"grid {da.sizes.get('lat')} x {da.sizes.get('lon')} is not the cells' grid"
                            f" {self.grid_lat.size} x {self.grid_lon.size} (or its coordinates differ)")
        out = da.isel(lat=xr.DataArray(self.lat_index, dims="cell"), lon=xr.DataArray(self.lon_index, dims="cell"))
        return out.drop_vars(["lat", "lon"]).assign_coords(self.coords())


def land_cells(valid: xr.DataArray, geometry: BandGeometry) -> Cells:
    """The cells where ``valid`` (``[lat, lon]``, e.g. a soil temperature given in every month) is true and whose
    centre lies in a band and the study longitudes.

    Raises
    ------
    DataError
        If no cell qualifies (a grid outside the study area, or no soil temperatures).
    """
    lat, lon = valid["lat"].values, valid["lon"].values
    band = geometry.band_of(lat)
    inside = (band[:, None] >= 0) & (lon[None, :] >= geometry.lon_min) & (lon[None, :] <= geometry.lon_max)
    rows, cols = np.nonzero(valid.transpose("lat", "lon").values & inside)
    if rows.size == 0:
        raise DataError(valid.name, f"no land cell in the study area ({geometry.edges[0]}..{geometry.edges[-1]} N,"
                        f" {geometry.lon_min}..{geometry.lon_max} E) has soil temperatures")
    return Cells(lat, lon, rows, cols, band[rows])


def _nearest(centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the grid cell (given by its ``centres``) holding each of ``values``; -1 outside the grid."""
    edges = cell_edges(centres)
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[(values < edges[0]) | (values >= edges[-1])] = -1
    return idx


def cell_means(da: xr.DataArray, cells: Cells) -> np.ndarray:
    """Per cell, the cos-latitude-weighted mean of the pixels of a finer ``[lat, lon]`` grid whose centres fall in
    the cell (missing pixels left out; NaN for a cell with none)."""
    i, j = _nearest(cells.grid_lat, da["lat"].values), _nearest(cells.grid_lon, da["lon"].values)
    lookup = np.full((cells.grid_lat.size, cells.grid_lon.size), -1)
    lookup[cells.lat_index, cells.lon_index] = np.arange(len(cells))
    cell = np.where((i[:, None] >= 0) & (j[None, :] >= 0), lookup[np.maximum(i, 0)[:, None], np.maximum(j, 0)], -1)
    values = da.transpose("lat", "lon").values
    weight = np.broadcast_to(np.cos(np.deg2rad(da["lat"].values))[:, None], values.shape)
    keep = (cell >= 0) & np.isfinite(values)
    total = np.bincount(cell[keep], weight[keep] * values[keep], minlength=len(cells))
    norm = np.bincount(cell[keep], weight[keep], minlength=len(cells))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, total / norm, np.nan)


def holdout_blocks(cells: Cells, block_deg: tuple[float, float], share: float, seed: int) -> np.ndarray:
    """Which cells a spatial hold-out keeps out (one bool per cell): whole blocks of ``block_deg`` (latitude,
    longitude) degrees, counted from the grid's south-west corner, drawn in a seeded random order until at least
    ``share`` of the cells are held out. At least one block always stays in.

    Raises
    ------
    DataError
        If the cells fill fewer than two blocks: a hold-out that large would leave nothing to train on.
    """
    lat0, lon0 = cell_edges(cells.grid_lat)[0], cell_edges(cells.grid_lon)[0]
    row = np.floor((cells.lat - lat0) / block_deg[0]).astype(np.int64)
    col = np.floor((cells.lon - lon0) / block_deg[1]).astype(np.int64)
    blocks, block_of, size = np.unique(row * (col.max() + 1) + col, return_inverse=True, return_counts=True)
    if len(blocks) < 2:
        raise DataError("cells", f"the {len(cells)} cells fill {len(blocks)} block of {block_deg[0]} x {block_deg[1]}"
                        " degrees: a spatial hold-out needs at least 2 (smaller cells.holdout_block_deg)")
    order = np.random.default_rng(seed).permutation(len(blocks))
    taken = min(int(np.searchsorted(np.cumsum(size[order]), share * len(cells))) + 1, len(blocks) - 1)
    return np.isin(block_of, order[:taken])


def with_soil(hwsd: xr.Dataset, cells: Cells) -> Cells:
    """The cells with some HWSD soil: HWSD marks water, ice and rock by no texture at all, and those have no active
    layer to model. The cells without are logged (how many, and the first few) and left out."""
    soil = np.isfinite(cell_means(hwsd["clay_pct"], cells))
    if not soil.all():
        lat, lon = cells.lat[~soil], cells.lon[~soil]
        log.warning("%d of %d land cells have no soil in HWSD (water, ice or rock) and are left out; first: %s",
                    (~soil).sum(), len(cells), ", ".join(f"({a:.2f} N, {o:.2f} E)" for a, o in zip(lat[:3], lon[:3])))
    return cells.subset(soil)


def static_cell_table(hwsd: xr.Dataset, codes: xr.DataArray, cells: Cells, cfg: StaticConfig) -> pd.DataFrame:
    """One row per cell: the band table's statics (:func:`thawcast.prep.soil.static_band_table`) at the cell,
    plus its latitude and longitude.

    Raises
    ------
    DataError
        Naming the cells without HWSD soil or lithology (water, ice or rock in HWSD; a lithology map that does
        not cover them): a unit's attributes must all be known.
    """
    table = pd.DataFrame({c: cell_means(hwsd[c], cells) for c in TEXTURE}, index=pd.RangeIndex(len(cells), name="cell"))
    oc_top = cell_means(hwsd["oc_top_pct"], cells)
    for k, (a, b) in enumerate(ERA5_LAYERS_M, start=1):
        oc = oc_top * layer_mean_factor(a, b, cfg.oc_efold_depth_m)
        table[f"oc_l{k}_g_kg"] = oc * 10.0
        table[f"bulk_density_l{k}_kg_m3"] = adams_bulk_density(oc, cfg.mineral_bulk_density_kg_m3)
    for k, name in enumerate(LITHOLOGY_CLASSES):
        table[f"lithology_{name}"] = cell_means((codes == k).where(codes.notnull()), cells)
    table["lat"], table["lon"] = cells.lat, cells.lon
    missing = table.isna().any(axis=1).to_numpy()
    if missing.any():
        where = ", ".join(f"({la:.2f} N, {lo:.2f} E)" for la, lo in zip(cells.lat[missing][:5], cells.lon[missing][:5]))
        raise DataError("static", f"{missing.sum()} of {len(cells)} land cells have no HWSD soil or lithology"
                        f" (first: {where}); they cannot be units")
    return table


def cell_store(era: xr.Dataset, cells: Cells, names: tuple[str, ...] = TARGETS) -> xr.Dataset:
    """The monthly ``names`` of the land cells as one lazy ``[cell, time, variable]`` float32 array ``values``.

    ``era`` is what :func:`thawcast.ingest.era5land.open_era5land` gives (dask chunks of 12 months); nothing is
    read here: :func:`write_cell_store` computes and writes it chunk by chunk.
    """
    absent = [n for n in names if n not in era]
    if absent:
        raise DataError("era5land", f"variables {absent} are not in the files (have {sorted(era.data_vars)})")
    cols = [cells.select(era[n]).astype("float32") for n in names]
    values = xr.concat(cols, dim=pd.Index(list(names), name="variable"), coords="minimal", compat="override")
    values = values.transpose("cell", "time", "variable")
    return xr.Dataset({"values": values})


def write_cell_store(store: xr.Dataset, path: Path) -> xr.Dataset:
    """Write a :func:`cell_store` to NetCDF one chunk of months at a time, in order, and return each cell's
    minimum, maximum and count of missing months per variable (``[cell, variable]``), found on the way.

    Each chunk is read by dask (on its threads, which read the variables at once, or on the workers of a
    dask.distributed client made the default scheduler) and written before the next is read, so memory holds one
    chunk. The writes go in time order from this thread: dask's own writer stores chunks in the
    order its threads finish, and HDF5 lays the file out in that order, so the same data gave files of other
    bytes (and another DVC hash) from run to run.
    """
    import netCDF4

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = store["values"]
    steps = np.cumsum((0, *values.chunks[1])) if values.chunks else np.array([0, values.sizes["time"]])
    n_cell, n_var = values.sizes["cell"], values.sizes["variable"]
    store.drop_vars("values").to_netcdf(path, engine="netcdf4")
    lo = np.full((n_cell, n_var), np.inf, dtype=np.float32)
    hi = np.full((n_cell, n_var), -np.inf, dtype=np.float32)
    missing = np.zeros((n_cell, n_var), dtype=np.int64)
    with netCDF4.Dataset(path, "a") as nc:
        out = nc.createVariable("values", "f4", ("cell", "time", "variable"), zlib=True, complevel=1, shuffle=True,
                                chunksizes=(n_cell, int(np.diff(steps).max()), n_var), fill_value=np.float32(np.nan))
        out.setncatts({**values.attrs, "coordinates": " ".join(sorted(set(values.coords) - set(values.dims)))})
        for a, b in itertools.pairwise(steps):
            block = np.asarray(values.isel(time=slice(a, b)).values, dtype=np.float32)
            out[:, a:b, :] = block
            with np.errstate(invalid="ignore"):
                lo = np.fmin(lo, np.nanmin(block, axis=1, initial=np.inf))
                hi = np.fmax(hi, np.nanmax(block, axis=1, initial=-np.inf))
            missing += np.isnan(block).sum(axis=1)
    lo[np.isinf(lo)], hi[np.isinf(hi)] = np.nan, np.nan
    dims, coords = ("cell", "variable"), {"cell": values["cell"].values, "variable": values["variable"].values}
    return xr.Dataset({"min": (dims, lo), "max": (dims, hi), "missing": (dims, missing)}, coords=coords)
