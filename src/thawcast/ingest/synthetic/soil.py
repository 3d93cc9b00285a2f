"""1-D soil heat conduction with snow insulation and latent heat of freezing.

The column is discretised into control volumes whose thickness grows geometrically with
depth (2 cm at the surface to metres at 20 m). Each time step solves the backward-Euler
heat equation (a tridiagonal system per column, vectorised over columns with the Thomas
algorithm)::

    C_app(T) dT/dt = d/dz (k(T) dT/dz)

Latent heat enters through an enthalpy ``H(T)`` that is piecewise linear: sensible heat
below -1 C and above 0 C, plus ``L * rho_w * theta`` released linearly across the
freezing interval. The step uses the apparent capacity ``dH/dT`` at the old temperature
and then converts the energy gained back to temperature through ``H``; this conserves
energy and produces a zero curtain (temperatures held near 0 C while water freezes or
thaws).

Upper boundary: the air (or surface) temperature reaches the soil through a surface
resistance plus, when snow lies, the snow pack's resistance ``depth / k_snow``. Snow
water equivalent accumulates snowfall and melts with a degree-day factor. Lower
boundary: a constant geothermal heat flux.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thawcast.variables import ERA5_LAYERS_M

LATENT_HEAT_FUSION = 3.34e5  # J kg-1
RHO_WATER = 1000.0  # kg m-3
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class SoilParams:
    """Thermal properties of the synthetic soil column (SI units)."""

    depth_m: float = 20.0
    dz_top_m: float = 0.02
    stretch: float = 1.15
    k_frozen: float = 1.9  # W m-1 K-1
    k_thawed: float = 1.2
    c_frozen: float = 1.9e6  # J m-3 K-1
    c_thawed: float = 2.6e6
    freeze_interval_c: float = 1.0  # water freezes linearly between -interval and 0 C
    k_snow: float = 0.22  # W m-1 K-1 (settled snow)
    snow_density: float = 260.0  # kg m-3
    melt_factor_mm_per_k_day: float = 3.5
    surface_resistance: float = 0.05  # m2 K W-1
    geothermal_flux: float = 0.06  # W m-2 (into the column from below)


def node_grid(p: SoilParams) -> tuple[np.ndarray, np.ndarray]:
    """Control-volume thicknesses and centre depths (m)."""
    dz = [p.dz_top_m]
    while sum(dz) < p.depth_m:
        dz.append(dz[-1] * p.stretch)
    dz_arr = np.array(dz)
    centres = np.cumsum(dz_arr) - dz_arr / 2
    return dz_arr, centres


def layer_matrix(dz: np.ndarray, layers=ERA5_LAYERS_M) -> np.ndarray:
    """Weights [n_layers, n_nodes] averaging node temperatures over each layer's depth."""
    tops = np.cumsum(dz) - dz
    bottoms = tops + dz
    m = np.zeros((len(layers), dz.size))
    for j, (a, b) in enumerate(layers):
        overlap = np.clip(np.minimum(bottoms, b) - np.maximum(tops, a), 0.0, None)
        m[j] = overlap / overlap.sum()
    return m


class Enthalpy:
    """Piecewise-linear enthalpy H(T) (J m-3) per column, with latent heat ``L rho_w theta``."""

    def __init__(self, p: SoilParams, theta: np.ndarray) -> None:
        self.tl = -p.freeze_interval_c
        self.cf, self.ct = p.c_frozen, p.c_thawed
        latent = LATENT_HEAT_FUSION * RHO_WATER * np.asarray(theta, dtype=float)
        self.c_mid = (latent / p.freeze_interval_c + 0.5 * (p.c_frozen + p.c_thawed))[:, None]
        self.h1 = self.cf * self.tl  # H at T = tl (scalar)
        self.h2 = self.h1 + self.c_mid * p.freeze_interval_c  # H at T = 0 (per column)

    def h(self, t: np.ndarray) -> np.ndarray:
        return (self.cf * np.minimum(t, self.tl) + self.c_mid * np.clip(t - self.tl, 0.0, -self.tl)
                + self.ct * np.maximum(t, 0.0))

    def t(self, h: np.ndarray) -> np.ndarray:
        return np.where(h <= self.h1, h / self.cf,
                        np.where(h <= self.h2, self.tl + (h - self.h1) / self.c_mid, (h - self.h2) / self.ct))

    def capacity(self, t: np.ndarray) -> np.ndarray:
        return np.where(t < self.tl, self.cf, np.where(t <= 0.0, self.c_mid, self.ct))


def _thomas(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Solve tridiagonal systems along axis 1 (one per row); a[:,0] and c[:,-1] are unused.

    The sweeps run over the nodes on node-major copies, so each step reads one contiguous row of all columns
    (three times faster than strided column slices for 4000 columns; the same arithmetic, the same bits).
    """
    a, b, c, d = (np.ascontiguousarray(m.T) for m in (a, b, c, d))
    n = b.shape[0]
    cp = np.empty_like(b)
    dp = np.empty_like(b)
    cp[0] = c[0] / b[0]
    dp[0] = d[0] / b[0]
    for i in range(1, n):
        den = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / den
        dp[i] = (d[i] - a[i] * dp[i - 1]) / den
    x = np.empty_like(b)
    x[-1] = dp[-1]
    for i in range(n - 2, -1, -1):
        x[i] = dp[i] - cp[i] * x[i + 1]
    return np.ascontiguousarray(x.T)


def simulate(
    t_surface: np.ndarray,
    snowfall: np.ndarray,
    t_air: np.ndarray,
    dt_days: float,
    theta: np.ndarray,
    params: SoilParams = SoilParams(),
    t_init: np.ndarray | None = None,
    latent: bool = True,
    snow: bool = True,
    observe: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the column model.

    Parameters
    ----------
    t_surface
        Forcing temperature at the top of the snow/soil, degC, shape [steps, cols].
    snowfall, t_air
        Snowfall (mm w.e. day-1) and air temperature (degC) driving the snow pack, [steps, cols].
    dt_days
        Step length in days.
    theta
        Volumetric water content per column (m3 m-3): sets the latent heat.
    params
        Thermal properties.
    t_init
        Initial temperature per column (degC), uniform with depth; default 0.
    latent, snow
        Switch latent heat / snow insulation off (for tests and attribution).
    observe
        Optional weights [n_obs, nodes] (e.g. :func:`layer_matrix`): if given, only these
        weighted averages are stored each step instead of every node (saves memory).

    Returns
    -------
    temps : ndarray [steps, cols, nodes] (or [steps, cols, n_obs] with ``observe``)
        Node temperatures after each step (degC), float32.
    snow_depth : ndarray [steps, cols]
        Snow depth (m).
    depths : ndarray [nodes]
        Node centre depths (m).
    """
    steps, ncol = t_surface.shape
    dz, z = node_grid(params)
    nn = dz.size
    dt = dt_days * SECONDS_PER_DAY
    enth = Enthalpy(params, np.asarray(theta) if latent else np.zeros(ncol))
    temp = np.zeros((ncol, nn)) if t_init is None else np.repeat(np.asarray(t_init, float)[:, None], nn, 1)
    swe = np.zeros(ncol)  # mm
    out = np.empty((steps, ncol, nn if observe is None else observe.shape[0]), dtype=np.float32)
    depth_out = np.empty((steps, ncol), dtype=np.float32)
    kf, kt, tl = params.k_frozen, params.k_thawed, -params.freeze_interval_c
    for s in range(steps):
        if snow:
            melt = np.minimum(swe + snowfall[s] * dt_days,
                              params.melt_factor_mm_per_k_day * np.maximum(t_air[s], 0.0) * dt_days)
            swe = swe + snowfall[s] * dt_days - melt
        depth = swe / params.snow_density  # mm w.e. / (kg m-3) == m of snow
        frac = np.clip((temp - tl) / (0.0 - tl), 0.0, 1.0)  # unfrozen fraction
        k = kf + (kt - kf) * frac
        half = dz / (2 * k)
        cond = 1.0 / (half[:, :-1] + half[:, 1:])  # between nodes i and i+1
        k_top = 1.0 / (params.surface_resistance + depth / params.k_snow + half[:, 0])
        cap = enth.capacity(temp) * dz / dt
        a = np.zeros_like(temp)
        c = np.zeros_like(temp)
        a[:, 1:] = -cond
        c[:, :-1] = -cond
        b = cap - a - c
        b[:, 0] += k_top
        d = cap * temp
        d[:, 0] += k_top * t_surface[s]
        d[:, -1] += params.geothermal_flux
        t_star = _thomas(a, b, c, d)
        temp = enth.t(enth.h(temp) + enth.capacity(temp) * (t_star - temp))
        out[s] = temp if observe is None else temp @ observe.T
        depth_out[s] = depth
    return out, depth_out, z
