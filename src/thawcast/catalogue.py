"""What thawcast knows by name: architectures, bias-correction methods, experiments, features.

Pure data with no heavy imports, so :mod:`thawcast.config` can check names in ``params.yaml``
against it without loading xarray, torch or matplotlib. Every list of names that more than
one module needs lives here (the variables and their units: :mod:`thawcast.variables`).
"""

from __future__ import annotations

from dataclasses import dataclass

from thawcast.models.hparams import HPARAMS
from thawcast.variables import ERA5_FEATURES, VARIABLES

#: The sequence models, in the paper's order (each has typed hyper-parameters in
#: :mod:`thawcast.models.hparams` and a network in :mod:`thawcast.models.registry`).
ARCHITECTURES: tuple[str, ...] = tuple(HPARAMS)

#: Bias-correction methods (:mod:`thawcast.prep.bias`) and what each does, as written into the outputs.
BIAS_METHODS: dict[str, str] = {"qdm": "quantile delta mapping (trend-preserving, Cannon et al. 2015)",
                                "eqm": "empirical quantile mapping (as in the paper)"}

#: CMIP5 experiments the CMIP5 reader and the synthetic world know.
CMIP5_EXPERIMENTS: tuple[str, ...] = ("historical", "rcp26", "rcp45", "rcp60", "rcp85")

#: Baselines scored beside every network (:mod:`thawcast.analysis.baselines`).
BASELINES: tuple[str, ...] = ("climatology", "persistence", "seasonal_persistence", "ridge")

#: Lithology classes of the rasterised geology (area fractions per band are static features).
LITHOLOGY_CLASSES: tuple[str, ...] = (
    "water", "unconsolidated_surficial_deposits", "glacier", "volcanic", "melange",
    "plutonic", "sedimentary", "metamorphic", "unknown",
)

#: HWSD topsoil texture (%).
TEXTURE: tuple[str, ...] = ("clay_pct", "sand_pct", "silt_pct")

#: Static per-band features and their units (:mod:`thawcast.prep.soil` computes them).
STATIC_UNITS: dict[str, str] = {
    **dict.fromkeys(TEXTURE, "%"),
    **{f"oc_l{i}_g_kg": "g kg-1" for i in range(1, 5)},
    **{f"bulk_density_l{i}_kg_m3": "kg m-3" for i in range(1, 5)},
    **{f"lithology_{c}": "1" for c in LITHOLOGY_CLASSES},
}

#: The scenario signal z of the paper's eqs. (2.1)-(2.2) and the variable it is computed from.
SIGNAL = "z"
SIGNAL_SOURCE = "r_thermal"


@dataclass(frozen=True)
class Feature:
    """One model input: its name, unit, kind (dynamic | calendar | static | signal) and meaning."""

    name: str
    unit: str
    kind: str
    description: str


def _static_description(name: str) -> str:
    if name.startswith("lithology_"):
        return f"area fraction of lithology class '{name.removeprefix('lithology_')}' in the band"
    if name.startswith("oc_l"):
        return f"soil organic carbon, ERA5-Land layer {name[4]}"
    if name.startswith("bulk_density_l"):
        return f"soil bulk density, ERA5-Land layer {name[14]}"
    return f"HWSD topsoil {name.removesuffix('_pct')} content"


#: Every feature a window can hold, in the paper's order (section 2.2.2).
FEATURES: dict[str, Feature] = {
    f.name: f
    for f in [
        *[Feature(n, VARIABLES[n].unit, "dynamic", VARIABLES[n].long_name) for n in ERA5_FEATURES],
        Feature("year", "yr", "calendar", "calendar year of the month"),
        Feature("month_sin", "1", "calendar", "sin(2 pi (month - 1) / 12)"),
        Feature("month_cos", "1", "calendar", "cos(2 pi (month - 1) / 12)"),
        *[Feature(n, u, "static", _static_description(n)) for n, u in STATIC_UNITS.items()],
        Feature(SIGNAL, "1", "signal",
                "scenario signal: |z~| z~ with z~ the window-mean R_thermal anomaly over the training"
                " mean and std (eqs. 2.1-2.2)"),
    ]
}

#: What a grid cell adds to the static features in cells mode (README "Grid cells"): where it is and how high (the
#: height where ERA5-Land's invariant geopotential is given). Band tables have none of them, so they are not in
#: :data:`FEATURES` (nor in ``features`` of params.yaml).
CELL_ATTRIBUTES: dict[str, Feature] = {
    "lat": Feature("lat", "degrees_north", "static", "latitude of the cell's centre"),
    "lon": Feature("lon", "degrees_east", "static", "longitude of the cell's centre"),
    "elevation_m": Feature("elevation_m", "m", "static",
                           "height of the cell above sea level (ERA5-Land's invariant geopotential / g)"),
}
#: The cell attributes every cell has; the others only where their source is given.
POSITION = ("lat", "lon")


def feature(name: str) -> Feature:
    """The :class:`Feature` called ``name``, a cell attribute included."""
    return FEATURES[name] if name in FEATURES else CELL_ATTRIBUTES[name]
