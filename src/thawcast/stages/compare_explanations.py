"""Stage ``compare-explanations``: the top SHAP features of every architecture side by side.

Reads ``data/explain/<arch>/top_features.json`` and writes ``metrics/shap.json`` (for
``dvc metrics show``: mean |SHAP| in degC of each architecture's top features) and
``metrics/shap.md`` (ranks per architecture, and the features most often in a top five).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.stages.explain import TOP_FILE

log = logging.getLogger(__name__)

METRICS_FILE = "shap.json"
TABLE_FILE = "shap.md"
RANKS = 5


def run(cfg: Config, explain_dir: Path = Path("data/explain"), metrics_dir: Path = Path("metrics")) -> Path:
    tops = {}
    for arch in cfg.training.architectures:
        path = explain_dir / arch / TOP_FILE
        if not path.exists():
            raise DataError(path, f"no SHAP summary for {arch!r} (run the explain@{arch} stage)")
        tops[arch] = json.loads(path.read_text())
    metrics = {arch: {"model": f"{t['registered_model']}/{t['version']}",
                      "additivity_gap_degc": t["additivity_gap_degc"],
                      "top": {r["feature"]: r["mean_abs_shap_degc"] for r in t["top"][:RANKS]}}
               for arch, t in tops.items()}
    votes = Counter(f for m in metrics.values() for f in m["top"])
    lines = ["# SHAP: which drivers matter", "",
             (f"Mean |SHAP| (degC, summed over the window's months, averaged over test windows, bands and layers);"
             f" top {RANKS} per architecture."), "",
             "| architecture | model | " + " | ".join(f"#{i + 1}" for i in range(RANKS)) + " | additivity gap |",
             "|" + "---|" * (RANKS + 3)]
    for arch, m in metrics.items():
        cells = [f"{f} ({v:.2f})" for f, v in m["top"].items()]
        lines.append(f"| {arch} | {m['model']} | " + " | ".join(cells) + f" | {m['additivity_gap_degc']:.3f} |")
    lines += ["", "In a top five of how many architectures: "
              + ", ".join(f"{f} {n}/{len(metrics)}" for f, n in votes.most_common()), ""]
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (metrics_dir / TABLE_FILE).write_text("\n".join(lines))
    log.info("features in most top fives: %s", votes.most_common(5))
    return metrics_dir / METRICS_FILE
