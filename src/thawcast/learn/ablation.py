"""Does a group of features earn its place among the inputs? Paired scores, without and with it.

The feature-ablation stage trains every architecture with its ``params.yaml`` defaults on every
seed of ``robustness``, once on the inputs without the tested features and once with them (the
same seeds, so each architecture x seed is a pair). This module turns the scores into the table
of ``metrics/feature_ablation.json``: the paired difference (with minus without) of the
validation RMSE overall, per architecture and per season x layer, and the decision, which the
validation years alone make. The test years are scored for the record, never for the choice.
"""

from __future__ import annotations

import math

import numpy as np

from thawcast.analysis.metrics import rmse
from thawcast.analysis.tables import markdown_table
from thawcast.learn.seeds import describe

#: Meteorological seasons by calendar month.
SEASONS: dict[str, tuple[int, ...]] = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}


def season_layer_rmse(obs: np.ndarray, pred: np.ndarray, months: np.ndarray) -> dict[str, list[float]]:
    """RMSE per season and layer: ``{season: [rmse of layer 1, ..]}`` of ``[N, layers]`` values whose target
    months (1-12) are ``months``."""
    out = {}
    for season, members in SEASONS.items():
        sel = np.isin(months, members)
        out[season] = [rmse(obs[sel, k], pred[sel, k]) if sel.any() else float("nan") for k in range(obs.shape[1])]
    return out


def paired(differences: list[float]) -> dict:
    """Mean of paired differences, its standard error (sample std / sqrt(n); 0 for one pair), and whether the mean
    lies beyond two standard errors of zero."""
    d = np.asarray(differences, dtype=float)
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
    mean = float(d.mean())
    return {"mean": mean, "standard_error": se, "n_pairs": int(d.size),
            "beyond_two_standard_errors": bool(abs(mean) > 2 * se) if se > 0 else mean != 0.0}


def decide(difference: dict) -> str:
    """``"add"`` where the features lower the validation RMSE beyond two standard errors of the paired
    difference; otherwise ``"leave out"`` (inputs that do not clearly help are one more thing a user must supply)."""
    return "add" if difference["mean"] < 0 and difference["beyond_two_standard_errors"] else "leave out"


def ablation_table(scores: dict[tuple[str, str, int], dict], features: tuple[str, ...], seeds: tuple[int, ...],
                   layers: tuple[str, ...], in_default: bool) -> dict:
    """The stage's table from ``scores[(variant, arch, seed)] = {"val": rmse, "test": rmse, "val_season":
    season_layer_rmse(..)}`` with variants ``without`` and ``with``."""
    archs = list(dict.fromkeys(a for _, a, _ in scores))
    pairs = [(a, s) for a in archs for s in seeds]

    def diff(key: str, pick=lambda x: x) -> list[float]:
        return [pick(scores["with", a, s][key]) - pick(scores["without", a, s][key]) for a, s in pairs]

    by_season = {}
    for season in SEASONS:
        by_season[season] = {}
        for k, layer in enumerate(layers):
            def at(v, season=season, k=k):
                return v[season][k]
            by_season[season][layer] = {
                "without": float(np.mean([at(scores["without", a, s]["val_season"]) for a, s in pairs])),
                "with": float(np.mean([at(scores["with", a, s]["val_season"]) for a, s in pairs])),
                "difference": paired(diff("val_season", at))}
    difference = paired(diff("val"))
    return {
        "features": list(features), "seeds": list(seeds), "architectures": archs,
        "settings": "params.yaml defaults of every architecture (tuned settings were chosen for one feature set)",
        "criterion": "paired difference (with minus without) of the validation RMSE over architectures x seeds;"
                     " add when it is negative beyond two standard errors",
        "validation_rmse": {v: describe([scores[v, a, s]["val"] for a, s in pairs]) for v in ("without", "with")},
        "difference": difference,
        "test_difference": paired(diff("test")),
        "by_architecture": {a: {"without": float(np.mean([scores["without", a, s]["val"] for s in seeds])),
                                "with": float(np.mean([scores["with", a, s]["val"] for s in seeds])),
                                "difference": paired([scores["with", a, s]["val"] - scores["without", a, s]["val"]
                                                      for s in seeds])} for a in archs},
        "by_season_layer": by_season,
        "decision": decide(difference),
        "in_default": in_default,
    }


def _diff(d: dict) -> str:
    return f"{d['mean']:+.3f} +- {d['standard_error']:.3f}" + (" *" if d["beyond_two_standard_errors"] else "")


def markdown(table: dict) -> str:
    feats = ", ".join(table["features"])
    d = table["difference"]
    lines = [f"# Feature ablation: {feats}", "",
             (f"Every architecture ({', '.join(table['architectures'])}) trained with its params.yaml defaults on"
              f" seeds {', '.join(map(str, table['seeds']))}, without and with {feats}. Validation RMSE in degC;"
              " 'difference' = with minus without (negative: the features help), mean over architecture x seed"
              " pairs +- its standard error; * beyond two standard errors. The validation years decide; the test"
              " years are shown for the record."), "",
             f"**Decision: {table['decision']}** ({feats}). Validation RMSE {table['validation_rmse']['without']['mean']:.3f}"
             f" without, {table['validation_rmse']['with']['mean']:.3f} with: {_diff(d)} degC over {d['n_pairs']}"
             f" pairs; on the test years {_diff(table['test_difference'])} degC."
             + (" The default `features` in params.yaml include them." if table["in_default"]
                else " The default `features` in params.yaml leave them out."), ""]
    rows = [[a, f"{r['without']:.3f}", f"{r['with']:.3f}", _diff(r["difference"])]
            for a, r in table["by_architecture"].items()]
    lines += markdown_table(["architecture", "without", "with", "difference"], rows)
    layers = list(next(iter(table["by_season_layer"].values())))
    lines += ["", ("Per season (of the target month) and layer: mean validation RMSE without -> with, and the"
                   " difference."), ""]
    rows = [[season] + [f"{c['without']:.3f} -> {c['with']:.3f} ({_diff(c['difference'])})"
                        for c in (by_layer[layer] for layer in layers)]
            for season, by_layer in table["by_season_layer"].items()]
    lines += markdown_table(["season", *layers], rows)
    return "\n".join(lines) + "\n"
