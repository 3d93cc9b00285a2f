"""Build (and optionally send) Copernicus CDS requests for ERA5-Land monthly means.

Nothing here runs in tests or in ``dvc repro``: the user runs ``thawcast download era5``
with their own CDS key (``~/.cdsapirc``); ``--dry-run`` prints the requests only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from thawcast.config import Config

log = logging.getLogger(__name__)

ERA5LAND_DATASET = "reanalysis-era5-land-monthly-means"

#: CDS request names of the ERA5-Land variables thawcast reads (short name -> request name).
CDS_VARIABLE_NAMES = {
    "t2m": "2m_temperature",
    "skt": "skin_temperature",
    "tp": "total_precipitation",
    "sf": "snowfall",
    "strd": "surface_thermal_radiation_downwards",
    "ssrd": "surface_solar_radiation_downwards",
    "slhf": "surface_latent_heat_flux",
    "sshf": "surface_sensible_heat_flux",
    **{f"swvl{i}": f"volumetric_soil_water_layer_{i}" for i in range(1, 5)},
    **{f"stl{i}": f"soil_temperature_level_{i}" for i in range(1, 5)},
    # snow (optional features; the depth is derived as sd / rsn)
    "sd": "snow_depth_water_equivalent",
    "rsn": "snow_density",
}


def era5land_request(cfg: Config, year: int, pad_deg: float = 0.1) -> dict:
    """The CDS request for one year of monthly means over the study box.

    ``area`` is [north, west, south, east] in degrees, padded by ``pad_deg`` so that the
    band edges are inside the grid.
    """
    area = cfg.study_area
    return {
        "product_type": ["monthly_averaged_reanalysis"],
        "variable": list(CDS_VARIABLE_NAMES.values()),
        "year": [str(year)],
        "month": [f"{m:02d}" for m in range(1, 13)],
        "time": ["00:00"],
        "area": [
            round(area.band_edges[-1] + pad_deg, 4), round(area.lon_min - pad_deg, 4),
            round(area.band_edges[0] - pad_deg, 4), round(area.lon_max + pad_deg, 4),
        ],
        "data_format": "netcdf",
        "download_format": "unarchived",
    }


def era5land_requests(cfg: Config, years: range | None = None) -> list[tuple[int, dict]]:
    years = years or range(cfg.period.start_year, cfg.period.end_year + 1)
    return [(y, era5land_request(cfg, y)) for y in years]


def download_era5land(cfg: Config, out_dir: Path, years: range | None = None) -> list[Path]:
    """Retrieve each year into ``out_dir`` with ``cdsapi`` (needs the user's CDS key)."""
    import cdsapi

    out_dir.mkdir(parents=True, exist_ok=True)
    client = cdsapi.Client()
    written = []
    for year, request in era5land_requests(cfg, years):
        target = out_dir / f"era5land_monthly_{year}.nc"
        if target.exists():
            log.info("%s exists, skipping", target)
            continue
        log.info("requesting %s %d", ERA5LAND_DATASET, year)
        part = target.with_suffix(".part")
        client.retrieve(ERA5LAND_DATASET, request, str(part))
        part.rename(target)
        written.append(target)
    return written
