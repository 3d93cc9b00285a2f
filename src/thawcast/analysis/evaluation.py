"""Test-period evaluation: every network and every baseline on the same windows, in degC.

Skill tables overall, per band, per layer and per band x layer
(:func:`thawcast.analysis.metrics.skill_table`), the fractional RMSE reduction of each network
against each baseline, and the paper's Table 2 with the baselines added as Markdown.
"""

from __future__ import annotations

import numpy as np

from thawcast.analysis.baselines import (
    RidgeBaseline,
    climatology_table,
    predict_climatology,
    predict_persistence,
    predict_seasonal_persistence,
)
from thawcast.analysis.metrics import fractional_reduction, skill_table
from thawcast.analysis.tables import markdown_table
from thawcast.config import WindowsConfig
from thawcast.prep.windows import Scaler, WindowSet, fit_months
from thawcast.variables import TARGETS


def baseline_predictions(cfg: WindowsConfig, train: WindowSet, val: WindowSet, test: WindowSet,
                         y_degc: np.ndarray, targets: Scaler, unit_onehot: bool = True,
                         ) -> tuple[dict[str, np.ndarray], dict]:
    """Test-window predictions (degC ``[N, 4]``) of every baseline, fitted without test data.

    Climatology uses the training-split months (those the scaler saw), ridge is fitted on
    the training split with its alpha chosen on validation; ``y_degc`` is the history's
    ``[unit, time, layer]`` target array in degC. ``unit_onehot``: whether ridge sees which unit a window is of.
    """
    months = test.times.month.to_numpy()
    table = climatology_table(y_degc, months, fit_months(test.times, cfg))
    ridge = RidgeBaseline(unit_onehot=unit_onehot).fit(train, val)
    preds = {
        "climatology": predict_climatology(table, test),
        "persistence": predict_persistence(y_degc, test),
        "seasonal_persistence": predict_seasonal_persistence(y_degc, test),
        "ridge": targets.inverse(ridge.predict(test)),
    }
    return preds, {"ridge_alpha": ridge.alpha}


def evaluation_metrics(obs: np.ndarray, preds: dict[str, np.ndarray], band: np.ndarray, band_names: list[str],
                       networks: list[str]) -> dict:
    """Skill tables of every model and the fractional RMSE reduction of each network vs each baseline."""
    tables = {name: skill_table(obs, p, band, TARGETS, band_names) for name, p in preds.items()}
    reduction = {net: {base: fractional_reduction(tables[net]["overall"]["rmse"], tables[base]["overall"]["rmse"])
                       for base in preds if base not in networks} for net in networks}
    best_net = min(networks, key=lambda n: tables[n]["overall"]["rmse"])
    best_base = min((n for n in preds if n not in networks), key=lambda n: tables[n]["overall"]["rmse"])
    return {"models": tables, "rmse_reduction": reduction, "best_network": best_net, "best_baseline": best_base,
            "best_network_beats_climatology": bool(tables[best_net]["overall"]["rmse"]
                                                   < tables["climatology"]["overall"]["rmse"])}


def evaluation_markdown(metrics: dict, networks: list[str], test_years: str, n_windows: int) -> str:
    """Table 2 of the paper, with the baselines and the fractional RMSE reductions added."""
    tables, red = metrics["models"], metrics["rmse_reduction"]
    baselines = [n for n in tables if n not in networks]
    head = ["model", "kind", "RMSE", "MAE", "R2", *[f"RMSE {t}" for t in TARGETS],
            *[f"vs {b}" for b in baselines]]
    order = sorted(tables, key=lambda n: (n not in networks, tables[n]["overall"]["rmse"]))
    rows = [[name, "network" if name in networks else "baseline",
             *(f"{tables[name]['overall'][k]:.3f}" for k in ("rmse", "mae", "r2")),
             *(f"{tables[name]['per_layer'][lay]['rmse']:.3f}" for lay in TARGETS),
             *((f"{red[name][b]:+.1%}" for b in baselines) if name in networks else ("" for _ in baselines))]
            for name in order]
    lines = [(f"Test years {test_years}, {n_windows} windows (all bands), degC. 'vs X' = fractional RMSE"
              " reduction 1 - RMSE/RMSE_X (positive: the network is better)."), "", *markdown_table(head, rows)]
    bands = list(next(iter(tables.values()))["per_band"])
    lines += ["", "RMSE per band (degC, all layers):", "",
              *markdown_table(["model", *bands], ([name, *(f"{tables[name]['per_band'][b]['rmse']:.3f}" for b in bands)]
                                                 for name in order))]
    verdict = ("beats" if metrics["best_network_beats_climatology"] else "does NOT beat")
    lines += ["", (f"Best network: **{metrics['best_network']}**; it {verdict} the climatology baseline."
                   f" Best baseline: {metrics['best_baseline']}."), ""]
    return "\n".join(lines)


def flat_scores(prefix: str, table: dict) -> dict[str, float]:
    out = {f"{prefix}{k}": v for k, v in table["overall"].items()}
    for group in ("per_layer", "per_band"):
        for key, sc in table[group].items():
            out.update({f"{prefix}{k}_{key.replace('.', 'p')}": v for k, v in sc.items()})
    return out


