"""Band geometry shared by every grid: Table 1 latitude bands, the study longitudes and
an Alaska land outline.

A grid cell's weight in band ``b`` is its area (proportional to cos(latitude) times
its extent) times the fraction of the cell that lies inside band ``b``, inside the study
longitudes and on Alaskan land. The fraction is estimated by sub-sampling the cell on
a ~0.05 degree lattice, so the same function serves the 0.1 degree ERA5-Land grid (a
few points per cell) and the 2.5 x 1.27 degree IPSL-CM5A-MR grid (over a thousand
points per cell, i.e. the cell's overlap fraction with the band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr
from matplotlib.path import Path as PolyPath

from thawcast.config import StudyAreaConfig
from thawcast.errors import DataError

# Simplified outline of mainland Alaska inside (and just beyond) the study box, as
# (lon, lat) vertices, clockwise from the Beaufort Sea end of the Canadian border.
# Coarse (tens of km): it decides which cells are land; the real ERA5-Land files
# additionally mask ocean with missing values. Islands are not included.
ALASKA_OUTLINE: tuple[tuple[float, float], ...] = (
    (-141.0, 69.65), (-143.0, 70.10), (-145.5, 70.10), (-148.5, 70.35), (-151.0, 70.45),
    (-152.5, 70.85), (-154.5, 70.95), (-156.6, 71.35), (-157.8, 70.85), (-159.5, 70.75),
    (-161.0, 70.30), (-162.8, 69.90), (-163.8, 69.10), (-166.2, 68.85), (-166.8, 68.35),
    (-165.0, 68.00), (-164.0, 67.60), (-163.0, 67.10), (-162.5, 66.90), (-162.0, 66.40),
    (-163.8, 66.50), (-164.8, 66.50), (-166.2, 66.20), (-168.2, 65.60), (-166.5, 64.70),
    (-165.4, 64.45), (-163.5, 64.55), (-162.5, 64.40), (-161.2, 64.90), (-160.8, 63.90),
    (-162.0, 63.45), (-163.5, 63.00), (-164.8, 62.70), (-165.7, 62.00), (-166.1, 61.60),
    (-165.2, 60.90), (-164.5, 60.40), (-163.0, 59.80), (-162.0, 59.20), (-161.5, 58.60),
    (-157.0, 58.70), (-154.5, 58.80), (-154.0, 59.40), (-153.0, 60.00), (-152.0, 60.60),
    (-151.0, 61.00), (-150.2, 61.25), (-150.0, 61.00), (-151.3, 60.60), (-151.8, 59.70),
    (-151.0, 59.20), (-149.5, 59.70), (-148.5, 60.00), (-147.5, 60.30), (-146.5, 60.80),
    (-146.0, 60.60), (-145.0, 60.30), (-143.5, 60.00), (-141.0, 60.00), (-140.0, 60.00),
    (-140.0, 69.60),
)

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class BandGeometry:
    """Latitude band edges, study longitudes and land outline.

    Parameters
    ----------
    edges
        Band edges in degrees north, increasing; band ``i`` is ``[edges[i], edges[i+1])``.
    lon_min, lon_max
        Study longitudes (degrees east, -180..180).
    outline
        Land polygon as (lon, lat) vertices.
    """

    edges: tuple[float, ...]
    lon_min: float
    lon_max: float
    outline: tuple[tuple[float, float], ...] = ALASKA_OUTLINE

    @classmethod
    def from_config(cls, cfg: StudyAreaConfig) -> BandGeometry:
        return cls(tuple(cfg.band_edges), cfg.lon_min, cfg.lon_max)

    @property
    def n_bands(self) -> int:
        return len(self.edges) - 1

    def band_of(self, lat: np.ndarray) -> np.ndarray:
        """Band index of each latitude, -1 outside all bands."""
        lat = np.asarray(lat, dtype=float)
        idx = np.searchsorted(self.edges, lat, side="right") - 1
        idx[(lat < self.edges[0]) | (lat >= self.edges[-1])] = -1
        return idx

    def is_land(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """True where (lon, lat) is inside the land outline and the study longitudes."""
        lon = wrap_lon(np.asarray(lon, dtype=float))
        lat = np.asarray(lat, dtype=float)
        pts = np.column_stack([lon.ravel(), lat.ravel()])
        inside = PolyPath(np.asarray(self.outline)).contains_points(pts).reshape(lon.shape)
        return inside & (lon >= self.lon_min) & (lon <= self.lon_max)

    def band_area_km2(self) -> np.ndarray:
        """Land area per band (km2) from the outline, on a 0.02 degree lattice."""
        step = 0.02
        lat = np.arange(self.edges[0] + step / 2, self.edges[-1], step)
        lon = np.arange(self.lon_min + step / 2, self.lon_max, step)
        lon2, lat2 = np.meshgrid(lon, lat)
        land = self.is_land(lon2, lat2)
        cell = (np.deg2rad(step) * EARTH_RADIUS_KM) ** 2 * np.cos(np.deg2rad(lat2))
        band = self.band_of(lat2)
        return np.array([(cell * land)[band == b].sum() for b in range(self.n_bands)])


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes to -180..180."""
    return ((np.asarray(lon, dtype=float) + 180.0) % 360.0) - 180.0


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a 1-D coordinate of (possibly irregular) centres, ascending."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def band_weights(
    lat: np.ndarray, lon: np.ndarray, geometry: BandGeometry, lattice_deg: float = 0.05,
    source: str | None = None,
) -> xr.DataArray:
    """Area weight of each cell in each band (``band, lat, lon``), zero outside.

    Parameters
    ----------
    lat, lon
        1-D ascending cell-centre coordinates (degrees; longitudes -180..180).
    geometry
        The band geometry.
    lattice_deg
        Sub-sampling spacing used to estimate each cell's overlap fraction.
    source
        File name used in error messages.

    Raises
    ------
    DataError
        If the grid does not cover every band (any band ends up with zero weight).
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    lat_e, lon_e = cell_edges(lat), cell_edges(lon)
    span_lo, span_hi = lat_e[0], lat_e[-1]
    w = np.zeros((geometry.n_bands, lat.size, lon.size))
    # Only cells that can touch the study box are sub-sampled.
    rows = np.flatnonzero((lat_e[1:] > geometry.edges[0]) & (lat_e[:-1] < geometry.edges[-1]))
    cols = np.flatnonzero((lon_e[1:] > geometry.lon_min) & (lon_e[:-1] < geometry.lon_max))
    if cols.size:
        widths = lon_e[cols + 1] - lon_e[cols]
        nx = max(1, math.ceil(widths.max() / lattice_deg))
        frac_x = (np.arange(nx) + 0.5) / nx
        sx = lon_e[cols][:, None] + frac_x[None, :] * widths[:, None]  # [col, nx]
        for i in rows:
            ny = max(1, math.ceil((lat_e[i + 1] - lat_e[i]) / lattice_deg))
            sy = lat_e[i] + (np.arange(ny) + 0.5) * (lat_e[i + 1] - lat_e[i]) / ny
            gx = np.broadcast_to(sx[:, None, :], (cols.size, ny, nx))
            gy = np.broadcast_to(sy[None, :, None], (cols.size, ny, nx))
            land = geometry.is_land(gx, gy)
            band = geometry.band_of(gy.ravel()).reshape(gy.shape)
            area = (lat_e[i + 1] - lat_e[i]) * widths * np.cos(np.deg2rad(lat[i]))
            for b in np.unique(band[land]):
                if b >= 0:
                    w[b, i, cols] = area * (land & (band == b)).mean(axis=(1, 2))
    if lon_e[0] > geometry.lon_min + 1e-6 or lon_e[-1] < geometry.lon_max - 1e-6:
        raise DataError(
            source,
            f"grid covers longitudes {lon_e[0]:.2f}..{lon_e[-1]:.2f} E, the study area spans"
            f" {geometry.lon_min:.2f}..{geometry.lon_max:.2f} E: every band would be averaged over part of its land",
        )
    missing = [b for b in range(geometry.n_bands) if w[b].sum() <= 0]
    if missing or span_lo > geometry.edges[0] + 1e-6 or span_hi < geometry.edges[-1] - 1e-6:
        bad = missing or [b for b in range(geometry.n_bands)
                          if geometry.edges[b] < span_lo or geometry.edges[b + 1] > span_hi]
        desc = ", ".join(f"band {b} ({geometry.edges[b]:.2f}-{geometry.edges[b + 1]:.2f} N)" for b in bad)
        raise DataError(
            source,
            f"grid covers latitudes {span_lo:.2f}..{span_hi:.2f} N, longitudes"
            f" {lon_e[0]:.2f}..{lon_e[-1]:.2f} E: it does not cover {desc}",
        )
    return xr.DataArray(
        w, dims=("band", "lat", "lon"),
        coords={"band": np.arange(geometry.n_bands), "lat": lat, "lon": lon},
        attrs={"long_name": "cell area x overlap fraction with band land", "units": "deg2 (cos-lat scaled)"},
    )


#: Largest share of a band's land weight that may lie on enclosed empty cells (a lake the data masks out, say).
#: More is a hole in the file, and the band mean would be over part of the band.
MAX_HOLE_SHARE = 0.02


def enclosed(empty: np.ndarray) -> np.ndarray:
    """The ``True`` cells of a ``[lat, lon]`` mask that cannot reach the grid's edge through other ``True`` cells
    (4-neighbour steps): for a mask of cells without data, the holes and lakes, not the sea and its bays."""
    empty = np.asarray(empty, dtype=bool)
    open_ = np.zeros_like(empty)
    open_[[0, -1], :] = empty[[0, -1], :]
    open_[:, [0, -1]] |= empty[:, [0, -1]]
    while True:
        grown = open_.copy()
        grown[1:] |= open_[:-1]
        grown[:-1] |= open_[1:]
        grown[:, 1:] |= open_[:, :-1]
        grown[:, :-1] |= open_[:, 1:]
        grown &= empty
        if np.array_equal(grown, open_):
            return empty & ~open_
        open_ = grown


#: Cells without data this close (km, about half a degree of latitude) to where the band geometry has no land may
#: be coast that the data call sea; farther inland, a cell without data is land the file leaves out.
COAST_KM = 55.0


def _xyz_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the sphere (km) of cell centres, for distances: the chord, within 0.01% of the arc up to 100 km."""
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return EARTH_RADIUS_KM * np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def missing_land(valid: np.ndarray, weights: xr.DataArray) -> np.ndarray:
    """``[lat, lon]`` booleans: cells without data on band land that the data surround (holes, lakes) or that
    lie more than :data:`COAST_KM` from the geometry's sea, measured on the sphere between cell centres (an area
    the file leaves out, even one that reaches the grid's edge). Empty cells on the coast, where the data's
    land-sea mask and the band geometry's differ, are not counted; a cell next to the sea (diagonals included) is
    always coast, however coarse the grid."""
    from scipy.ndimage import binary_dilation
    from scipy.spatial import cKDTree

    empty = ~np.asarray(valid, dtype=bool)
    sea = weights.values.sum(axis=0) <= 0  # no band land in the cell (the sea, or outside the study area)
    near_sea = binary_dilation(sea, structure=np.ones((3, 3), bool))
    if sea.any():
        lat, lon = np.meshgrid(weights["lat"].values, weights["lon"].values, indexing="ij")
        points = _xyz_km(lat, lon)
        ask = empty & ~near_sea
        dist, _ = cKDTree(points[sea]).query(points[ask], distance_upper_bound=COAST_KM)
        near_sea[ask] = np.isfinite(dist)
    return empty & (enclosed(empty) | ~near_sea)


def check_holes(valid: np.ndarray, weights: xr.DataArray, geometry: BandGeometry, source: str | None = None,
                what: str = "data") -> None:
    """Raise if band land without data (:func:`missing_land`) carries more than :data:`MAX_HOLE_SHARE` of any
    band's land weight.

    Parameters
    ----------
    valid
        ``[lat, lon]`` booleans, True where the cell has data (in any month).
    weights
        The grid's :func:`band_weights` (``band, lat, lon``; cos-lat scaled deg2).
    geometry
        The band geometry the weights were made with (for the band edges in the message).
    source, what
        The file and the variable named in the message.

    Raises
    ------
    DataError
        Naming the band, the share it lost and the latitude/longitude range of the empty cells.
    """
    lat, lon, w = weights["lat"].values, weights["lon"].values, weights.values
    hole = missing_land(valid, weights)
    for b in range(w.shape[0]):
        share = w[b][hole].sum() / w[b].sum()
        if share > MAX_HOLE_SHARE:
            rows, cols = np.nonzero(hole & (w[b] > 0))
            raise DataError(
                source,
                f"no {what} in {rows.size} land cells of band {b} ({geometry.edges[b]:.2f}-"
                f"{geometry.edges[b + 1]:.2f} N), {share:.1%} of the band's land, at latitudes {lat[rows].min():.2f}.."
                f"{lat[rows].max():.2f} N, longitudes {lon[cols].min():.2f}..{lon[cols].max():.2f} E: a hole in the"
                " grid or an area the file leaves out (the band mean would cover part of the band)",
            )
