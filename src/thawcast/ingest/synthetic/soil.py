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

The time loop runs compiled (numba), one column per thread: columns never interact, so the
result does not depend on the number of threads, nor on numba's threading layer. The layer is
numba's own ``workqueue`` unless ``NUMBA_THREADING_LAYER`` says otherwise: numba would pick its
OpenMP layer where a system libgomp exists, a second OpenMP runtime beside torch's in the same
process, and a test run crashed (segfault) in this module after torch had trained models in that
process (the same clash as scverse/scanpy#4026). Calls come one at a time from one thread, which
is all ``workqueue`` supports.

The compiled kernels are cached on disk (numba's ``cache=True``), and each process compiles or loads them
once, holding a lock file shared by every process of this user on the machine (:func:`_compile_once`):
processes that compiled these parallel kernels at the same time could leave a cache that a later process
loaded and crashed on (numba/numba#4807), and a test run does exactly that (pytest workers and the stages
they start, all on a fresh clone's empty cache).

Upper boundary: the air (or surface) temperature reaches the soil through a surface
resistance plus, when snow lies, the snow pack's resistance ``depth / k_snow``. Snow
water equivalent accumulates snowfall and melts with a degree-day factor, up to
:data:`GLACIER_SWE_MM` (where snow outlasts every summer, a glacier's). Lower
boundary: a constant geothermal heat flux.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from filelock import FileLock

from thawcast.variables import ERA5_LAYERS_M

LATENT_HEAT_FUSION = 3.34e5  # J kg-1
RHO_WATER = 1000.0  # kg m-3
SECONDS_PER_DAY = 86400.0

if "NUMBA_THREADING_LAYER" not in os.environ:  # see the module docstring (before the first parallel call)
    numba.config.THREADING_LAYER = "workqueue"

_compiled = False  # whether this process has its kernels (see _compile_once)


def compile_lock_path() -> Path:
    """The lock file under which processes compile or load the kernels: one per user and installed copy."""
    key = hashlib.sha1(__file__.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"thawcast-numba-{os.getuid()}-{key}.lock"


def _compile_once() -> None:
    """Compile the parallel kernels, or load them from numba's cache, under the machine-wide lock (module
    docstring), on the argument types every call uses, so that no later call compiles outside the lock."""
    global _compiled
    if _compiled:
        return
    with FileLock(compile_lock_path()):
        _compiled = True  # the calls below pass through here
        try:
            tiny = np.zeros((2, 1))
            simulate(tiny, tiny, tiny, 1.0, 0.0)
            snow_pack(tiny, tiny, 1.0, np.arange(2))
        except BaseException:
            _compiled = False
            raise


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


@numba.njit(cache=True)
def _enthalpy(t: float, cf: float, c_mid: float, ct: float, tl: float) -> float:
    """H(T) (J m-3): sensible heat below ``tl`` and above 0 C, latent heat spread over ``tl..0``."""
    return cf * min(t, tl) + c_mid * min(max(t - tl, 0.0), -tl) + ct * max(t, 0.0)


@numba.njit(cache=True)
def _temperature(h: float, cf: float, c_mid: float, ct: float, tl: float) -> float:
    """T(H), the inverse of :func:`_enthalpy`."""
    h1 = cf * tl
    h2 = h1 - c_mid * tl
    if h <= h1:
        return h / cf
    if h <= h2:
        return tl + (h - h1) / c_mid
    return (h - h2) / ct


@numba.njit(cache=True)
def _solve_tridiagonal(a, b, c, d, cp, dp, x) -> None:
    """Thomas algorithm for one system (``a[0]`` and ``c[-1]`` unused); ``cp``, ``dp`` are scratch."""
    n = b.size
    cp[0] = c[0] / b[0]
    dp[0] = d[0] / b[0]
    for i in range(1, n):
        den = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / den
        dp[i] = (d[i] - a[i] * dp[i - 1]) / den
    x[n - 1] = dp[n - 1]
    for i in range(n - 2, -1, -1):
        x[i] = dp[i] - cp[i] * x[i + 1]


#: The most snow a column holds (mm w.e.): ERA5-Land's land model keeps its glaciers' snow fixed at 10 m of water
#: equivalent (ECMWF), so snow that outlasts every summer (on the synthetic world's highest ranges) stops there.
GLACIER_SWE_MM = 10000.0


@numba.njit(cache=True)
def _snow_step(w: float, snowfall: float, t_air: float, melt_factor: float, dt_days: float) -> float:
    """Snow water equivalent (mm) after one step: the snowfall (mm day-1) accumulates up to
    :data:`GLACIER_SWE_MM`, and a degree-day melt (``melt_factor`` mm per K above 0 C per day) removes what it
    can."""
    add = snowfall * dt_days
    return min(w + add - min(w + add, melt_factor * max(t_air, 0.0) * dt_days), GLACIER_SWE_MM)


@numba.njit(parallel=True, cache=True)
def _run_snow(snowfall, t_air, dt_days, melt_factor, rows, weight, swe, out) -> None:
    """The snow pack alone (no soil): add ``weight[s]`` x the snow water equivalent to ``out[rows[s]]``."""
    steps, ncol = snowfall.shape
    for j in numba.prange(ncol):
        w = swe[j]
        for s in range(steps):
            w = _snow_step(w, snowfall[s, j], t_air[s, j], melt_factor, dt_days)
            out[rows[s], j] += weight[s] * w
        swe[j] = w


def snow_pack(snowfall: np.ndarray, t_air: np.ndarray, dt_days: float, periods: np.ndarray,
              params: SoilParams = SoilParams(), swe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The snow pack of :func:`simulate` without the soil under it (what a GCM's land model reports as ``snw``).

    Parameters
    ----------
    snowfall, t_air
        Snowfall (mm w.e. day-1) and air temperature (degC) per step, [steps, cols].
    periods
        [steps] non-decreasing output row of each step (e.g. its month).
    swe
        Snow water equivalent (mm) per column at the start (default none).

    Returns
    -------
    The mean snow water equivalent per row [rows, cols] (mm) and the columns' snow at the end.
    """
    _compile_once()
    snowfall = np.ascontiguousarray(snowfall, dtype=np.float64)
    steps, ncol = snowfall.shape
    rows, weight, n_rows = _row_weights(periods, steps)
    swe = np.zeros(ncol) if swe is None else np.array(swe, dtype=np.float64)
    out = np.zeros((n_rows, ncol))
    _run_snow(snowfall, np.ascontiguousarray(t_air, dtype=np.float64), float(dt_days),
              params.melt_factor_mm_per_k_day, rows, weight, swe, out)
    return out, swe


def _row_weights(periods: np.ndarray | None, steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Output row of each step, the weight that makes each row a mean over its steps, and the row count."""
    rows = np.arange(steps) if periods is None else np.asarray(periods, dtype=np.int64)
    if rows.shape != (steps,) or (steps and (rows[0] < 0 or np.any(np.diff(rows) < 0))):
        raise ValueError("periods must give a non-decreasing row >= 0 for every step")
    n_rows = int(rows[-1]) + 1 if steps else 0
    return rows, 1.0 / np.bincount(rows, minlength=n_rows)[rows], n_rows


@numba.njit(parallel=True, cache=True)
def _run_columns(t_surface, snowfall, t_air, dt_days, dz, latent, props, snow, observe, rows, weight,
                 temp, swe, out, depth_out) -> None:
    """Step every column through every step; add ``weight[s]`` x the observed values to ``out[rows[s]]``.

    ``props`` = (k_frozen, k_thawed, c_frozen, c_thawed, freeze interval, k_snow, snow density, melt
    factor, surface resistance, geothermal flux). ``temp`` [col, node] and ``swe`` [col] are the state,
    updated in place.
    """
    kf, kt, cf, ct, interval, k_snow, rho_snow, melt_factor, r_surf, g_flux = props
    tl = -interval
    steps, ncol = t_surface.shape
    nn = dz.size
    n_obs = observe.shape[0]
    dt = dt_days * SECONDS_PER_DAY
    for j in numba.prange(ncol):
        c_mid = latent[j] / interval + 0.5 * (cf + ct)
        tj = temp[j].copy()
        w = swe[j]
        half, capc, cap = np.empty(nn), np.empty(nn), np.empty(nn)
        a, b, c, d = np.zeros(nn), np.empty(nn), np.zeros(nn), np.empty(nn)
        cp, dp, x = np.empty(nn), np.empty(nn), np.empty(nn)
        for s in range(steps):
            if snow:
                w = _snow_step(w, snowfall[s, j], t_air[s, j], melt_factor, dt_days)
            depth = w / rho_snow  # mm w.e. / (kg m-3) == m of snow
            for i in range(nn):
                frac = min(max((tj[i] - tl) / interval, 0.0), 1.0)  # unfrozen fraction
                half[i] = dz[i] / (2.0 * (kf + (kt - kf) * frac))
                capc[i] = cf if tj[i] < tl else (c_mid if tj[i] <= 0.0 else ct)
                cap[i] = capc[i] * dz[i] / dt
            for i in range(nn - 1):
                cond = 1.0 / (half[i] + half[i + 1])  # between nodes i and i+1
                c[i] = -cond
                a[i + 1] = -cond
            for i in range(nn):
                b[i] = cap[i] - a[i] - c[i]
                d[i] = cap[i] * tj[i]
            k_top = 1.0 / (r_surf + depth / k_snow + half[0])
            b[0] += k_top
            d[0] += k_top * t_surface[s, j]
            d[nn - 1] += g_flux
            _solve_tridiagonal(a, b, c, d, cp, dp, x)
            for i in range(nn):
                h = _enthalpy(tj[i], cf, c_mid, ct, tl) + capc[i] * (x[i] - tj[i])
                tj[i] = _temperature(h, cf, c_mid, ct, tl)
            r = rows[s]
            for o in range(n_obs):
                acc = 0.0
                for i in range(nn):
                    acc += observe[o, i] * tj[i]
                out[r, j, o] += weight[s] * acc
            depth_out[r, j] += weight[s] * depth
        temp[j] = tj
        swe[j] = w


class ColumnState(NamedTuple):
    """Where a run ends and the next may start: node temperatures [col, node] (degC), snow [col] (mm w.e.)
    and the water content [col] (m3 m-3) the columns' latent heat was set from."""

    temp: np.ndarray
    swe: np.ndarray
    theta: np.ndarray


class ColumnRun(NamedTuple):
    """Result of :func:`simulate`."""

    temps: np.ndarray  # [rows, cols, nodes or n_obs] float32
    snow_depth: np.ndarray  # [rows, cols] m, float32
    depths: np.ndarray  # [nodes] node centre depths, m
    state: ColumnState  # after the last step


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
    state: ColumnState | None = None,
    periods: np.ndarray | None = None,
) -> ColumnRun:
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
        Initial temperature per column (degC), uniform with depth; default 0 (no snow).
    latent, snow
        Switch latent heat / snow insulation off (for tests and attribution).
    observe
        Optional weights [n_obs, nodes] (e.g. :func:`layer_matrix`): if given, only these
        weighted averages are stored instead of every node (saves memory).
    state
        Start from a previous run's :attr:`ColumnRun.state` instead of ``t_init``.
    periods
        Optional [steps] non-decreasing output row of each step (e.g. its month): the output is then the
        mean over each row's steps instead of every step.

    Returns
    -------
    ColumnRun
        ``temps`` [steps or rows, cols, nodes or n_obs] (degC) after each step or averaged per row,
        ``snow_depth`` [steps or rows, cols] (m), ``depths`` [nodes] and the final ``state``.
    """
    _compile_once()
    t_surface = np.ascontiguousarray(t_surface, dtype=np.float64)
    steps, ncol = t_surface.shape
    dz, z = node_grid(params)
    nn = dz.size
    if state is not None:
        temp, swe = np.array(state.temp, dtype=np.float64), np.array(state.swe, dtype=np.float64)
    else:
        temp = np.zeros((ncol, nn)) if t_init is None else np.repeat(np.asarray(t_init, float)[:, None], nn, 1)
        swe = np.zeros(ncol)
    if temp.shape != (ncol, nn) or swe.shape != (ncol,):
        raise ValueError(f"state for {temp.shape} nodes and {swe.shape} columns; the forcing has {ncol} columns"
                         f" and the grid {nn} nodes")
    rows, weight, n_rows = _row_weights(periods, steps)
    obs = np.eye(nn) if observe is None else np.ascontiguousarray(observe, dtype=np.float64)
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), (ncol,))
    latent_heat = LATENT_HEAT_FUSION * RHO_WATER * theta if latent else np.zeros(ncol)
    props = np.array([params.k_frozen, params.k_thawed, params.c_frozen, params.c_thawed,
                      params.freeze_interval_c, params.k_snow, params.snow_density,
                      params.melt_factor_mm_per_k_day, params.surface_resistance, params.geothermal_flux])
    out = np.zeros((n_rows, ncol, obs.shape[0]))
    depth_out = np.zeros((n_rows, ncol))
    _run_columns(t_surface, np.ascontiguousarray(snowfall, dtype=np.float64),
                 np.ascontiguousarray(t_air, dtype=np.float64), float(dt_days), dz, latent_heat, props, snow, obs,
                 rows, weight, temp, swe, out, depth_out)
    return ColumnRun(out.astype(np.float32), depth_out.astype(np.float32), z, ColumnState(temp, swe, theta.copy()))
