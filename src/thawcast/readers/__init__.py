"""Readers for the real raw formats: CDS ERA5-Land NetCDF, ESGF CMIP5 CMOR NetCDF, static grids.

Every reader returns an :class:`xarray.Dataset` with dimensions ``time`` (month starts,
``datetime64``), ``lat`` (ascending) and ``lon`` (ascending, -180..180), variables under
their canonical names and units (see :mod:`thawcast.variables`).
"""

from thawcast.readers.cmip5 import cmip5_filename, find_cmip5_files, open_cmip5
from thawcast.readers.era5land import ERA5_SHORT_NAMES, open_era5land

__all__ = ["ERA5_SHORT_NAMES", "cmip5_filename", "find_cmip5_files", "open_cmip5", "open_era5land"]
