"""Getting data in. Readers for the real raw formats: CDS ERA5-Land NetCDF, ESGF CMIP5 CMOR NetCDF, static grids.

Every reader returns an :class:`xarray.Dataset` with dimensions ``time`` (month starts,
``datetime64``), ``lat`` (ascending) and ``lon`` (ascending, -180..180), variables under
their canonical names and units (see :mod:`thawcast.variables`): :mod:`.era5land`, :mod:`.cmip5`, :mod:`.hwsd` (static grids),
:mod:`.common` (shared checks). Also the embedded synthetic Alaska (:mod:`.synthetic`) and
real-data downloads (:mod:`.download`).
"""
