"""Analysis of results: skill metrics, baselines, evaluation tables, projections, thaw metrics, SHAP, plots."""
