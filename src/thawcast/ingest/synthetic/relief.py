"""Relief of the synthetic Alaska: the ranges, uplands and lowlands that set where mountain permafrost is.

SYNTHETIC: not a digital elevation model. Each named range is a Gaussian ridge along a few (lon, lat) points of its
crest line, with a crest height and a width close to those of the real range as a 0.25-degree grid sees it (the
peaks themselves are far higher: Denali is 6,190 m); the lowlands between them (the Yukon-Kuskokwim delta, the
Yukon and Tanana flats, the North Slope's coastal plain) are what is left near sea level. The heights are in
metres above sea level and never negative.

The smooth climate fields of :func:`thawcast.ingest.synthetic.climate.generate` were calibrated to band means, so
they stand for the climate at each latitude's mean height of the land; a cell departs from it by its height above
that (:func:`height_above_regional`): positive on ranges, negative in lowlands, and zero on average along each row
of the grid. Precipitation grows with that height (:data:`OROGRAPHIC_PER_KM`), by a factor whose mean over each
row's land is 1 (:func:`terrain`), so the air temperature and the precipitation of each row's land, and so of each
band, keep their calibrated means (their responses, snow and soil, are not linear and move a little).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Ridge:
    """A range: its crest line (``(lon, lat)`` points, degrees), crest height (m) and half-width (Gaussian sigma,
    degrees of latitude, about 111 km each)."""

    name: str
    crest: tuple[tuple[float, float], ...]
    height_m: float
    width_deg: float


#: The ranges and uplands of the synthetic Alaska (crest heights of 0.25-degree cell means, not of peaks).
RIDGES: tuple[Ridge, ...] = (
    Ridge("Brooks Range", ((-163.5, 68.4), (-158.0, 68.2), (-153.0, 67.9), (-149.0, 68.1), (-145.0, 68.5),
                           (-141.0, 69.1)), 1500.0, 0.45),
    Ridge("Arctic foothills", ((-163.0, 69.1), (-158.0, 69.0), (-153.0, 68.8), (-149.0, 69.0), (-145.0, 69.4),
                               (-141.0, 69.8)), 350.0, 0.45),
    Ridge("Alaska Range", ((-154.5, 60.8), (-152.5, 62.2), (-151.0, 63.1), (-148.5, 63.5), (-146.0, 63.4),
                           (-143.0, 62.9), (-141.0, 62.5)), 2200.0, 0.35),
    Ridge("Wrangell Mountains", ((-144.5, 62.1), (-142.8, 61.8), (-141.3, 61.3)), 2200.0, 0.35),
    Ridge("Chugach Mountains", ((-149.5, 61.2), (-147.0, 61.2), (-144.5, 61.0), (-141.0, 60.6)), 1700.0, 0.35),
    Ridge("Talkeetna Mountains", ((-149.5, 62.1), (-147.5, 62.2)), 1500.0, 0.35),
    Ridge("Kenai Mountains", ((-150.3, 59.5), (-149.3, 60.5)), 1100.0, 0.3),
    Ridge("Aleutian Range", ((-156.0, 58.6), (-154.5, 59.6), (-153.3, 60.4)), 1300.0, 0.3),
    Ridge("Kuskokwim Mountains", ((-160.0, 60.8), (-157.0, 62.2), (-154.5, 63.6)), 700.0, 0.9),
    Ridge("Ahklun Mountains", ((-161.5, 59.6), (-159.5, 60.2)), 800.0, 0.4),
    Ridge("Seward Peninsula", ((-166.0, 64.9), (-163.5, 65.0)), 700.0, 0.35),
    Ridge("Yukon-Tanana Uplands", ((-148.5, 64.8), (-144.0, 64.8), (-141.0, 64.6)), 900.0, 0.8),
    Ridge("Nulato Hills", ((-161.0, 63.0), (-159.5, 65.5)), 500.0, 0.6),
)

def _distance_deg(lat: np.ndarray, lon: np.ndarray, crest: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Distance (degrees of latitude) from each point to the crest polyline, on a local equirectangular plane
    (longitudes shrunk by the cosine of the crest's mean latitude)."""
    shrink = np.cos(np.deg2rad(np.mean([p[1] for p in crest])))
    x, y = lon * shrink, lat
    best = np.full(np.shape(lat), np.inf)
    points = [(p[0] * shrink, p[1]) for p in crest]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        best = np.minimum(best, np.hypot(x - (x0 + t * dx), y - (y0 + t * dy)))
    return best


def elevation(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Height above sea level (m) at points ``lat``/``lon`` (degrees north / east, any matching shapes)."""
    lat, lon = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
    out = np.zeros(lat.shape)
    for ridge in RIDGES:
        out += ridge.height_m * np.exp(-0.5 * (_distance_deg(lat, lon, ridge.crest) / ridge.width_deg) ** 2)
    return out


def _row_land_mean(values: np.ndarray, land: np.ndarray) -> np.ndarray:
    """The mean of ``values`` over each row's ``land`` cells, ``[lat, 1]`` (NaN for a row without land)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((values * land).sum(1) / land.sum(1))[:, None]


def height_above_regional(lat: np.ndarray, lon: np.ndarray, land: np.ndarray) -> np.ndarray:
    """Height (km) of each cell of a regular ``[lat, lon]`` grid (1-D coordinates) above the mean height of the
    ``land`` cells of its row (0 in rows without land)."""
    lat, lon, land = np.asarray(lat, float), np.asarray(lon, float), np.asarray(land, bool)
    height = elevation(lat[:, None], lon[None, :])
    return np.nan_to_num(height - _row_land_mean(height, land)) / 1000.0


#: Precipitation grows by this factor per km of height (orographic enhancement), exponentially.
OROGRAPHIC_PER_KM = 0.4


class Terrain(NamedTuple):
    """What the relief does to the climate of each cell, ``[lat, lon]`` like the grid (or ``[1, n]`` for some of its
    cells, :meth:`at`)."""

    height_km: np.ndarray  #: height above the row's mean land height (km): the lapse rate acts on it
    wetness: np.ndarray  #: precipitation factor, exp(OROGRAPHIC_PER_KM x height) over its row's land mean

    def at(self, cells: np.ndarray) -> Terrain:
        """The terrain of the grid's ``cells`` (a ``[lat, lon]`` mask) as a ``[1, n]`` row, in row-major order."""
        return Terrain(self.height_km[cells][None], self.wetness[cells][None])


def terrain(lat: np.ndarray, lon: np.ndarray, land: np.ndarray) -> Terrain:
    """The :class:`Terrain` of a regular grid (1-D ascending coordinates) whose ``land`` cells the climate covers;
    off land the factor is that of the row's land (1 in rows without land)."""
    land = np.asarray(land, bool)
    height = height_above_regional(lat, lon, land)
    factor = np.exp(OROGRAPHIC_PER_KM * height)
    return Terrain(height, np.nan_to_num(factor / _row_land_mean(factor, land), nan=1.0))
