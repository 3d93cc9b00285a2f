"""Data quality and provenance: Great Expectations suites, stage validation, NetCDF provenance and all-or-nothing outputs."""
