"""Run a Great Expectations suite on a validation frame and write a readable report."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from thawcast.errors import ConfigError, ValidationFailed

log = logging.getLogger(__name__)

_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _CONTEXT = gx.get_context(mode="ephemeral")
        _CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False)
    return _CONTEXT


def load_suite(name: str, suite_dir: Path, present=None):
    """Load ``<suite_dir>/<name>.json`` as a ``gx.ExpectationSuite``.

    ``present``: the frame's columns; the expectations of an optional variable (``meta.optional_variable``, see
    :mod:`thawcast.quality.suites`) whose column is not among them are left out (its data are absent, which the
    stage that needs them reports).
    """
    import great_expectations as gx

    path = Path(suite_dir) / f"{name}.json"
    if not path.exists():
        raise ConfigError(f"{path}: expectation suite not found (run `thawcast expectations`)")
    _context()
    spec = json.loads(path.read_text())
    if present is not None:
        have = set(present)
        spec["expectations"] = [e for e in spec["expectations"]
                                if "optional_variable" not in e.get("meta", {}) or e["kwargs"]["column"] in have]
    return gx.ExpectationSuite(**spec)


def _describe(result) -> str:
    cfg = result.expectation_config
    kw = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    res = result.result or {}
    if "observed_value" in res:
        got = f"observed {res['observed_value']}"
    else:
        sample = res.get("partial_unexpected_list", [])[:5]
        where = res.get("partial_unexpected_index_list", [])[:3]
        got = f"{res.get('unexpected_count', '?')} unexpected, e.g. {sample}"
        if where:
            got += f" at {where}"
    if result.exception_info and result.exception_info.get("raised_exception"):
        got = f"error: {result.exception_info.get('exception_message')}"
    return f"{cfg.type}({', '.join(f'{k}={v}' for k, v in kw.items())}): {got}"


def run_suite(
    frame: pd.DataFrame,
    suite_name: str,
    suite_dir: Path = Path("expectations"),
    parameters: dict | None = None,
    index_columns: list[str] | None = None,
) -> dict:
    """Validate ``frame`` against one suite; return a report section (nothing raised or written).

    Parameters
    ----------
    frame
        The validation frame (see :mod:`thawcast.quality.suites`).
    suite_name
        Suite file stem in ``suite_dir``.
    parameters
        Values for the suite's ``$PARAMETER`` placeholders.
    index_columns
        Columns reported next to unexpected values (e.g. ``source_file``, ``band``).
    """
    suite = load_suite(suite_name, suite_dir, present=frame.columns)
    batch = _context().data_sources.pandas_default.read_dataframe(frame)
    fmt = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
    if index_columns:
        fmt["unexpected_index_column_names"] = index_columns
    result = batch.validate(suite, expectation_parameters=parameters or {}, result_format=fmt)
    failed = [r for r in result.results if not r.success]
    return {
        "suite": suite_name, "success": bool(result.success), "rows": len(frame),
        "expectations": len(result.results), "failed": len(failed),
        "failures": [f"[{suite_name}] {_describe(r)}" for r in failed],
        "details": result.to_json_dict(),
    }


def validate_stage(stage: str, sections: list[dict], report_dir: Path = Path("reports/validation")) -> Path:
    """Write ``<report_dir>/<stage>.json`` from suite sections; raise if any failed.

    Raises
    ------
    ValidationFailed
        Listing every failed expectation, with the report path.
    """
    failures = [f for s in sections for f in s["failures"]]
    report = {
        "stage": stage, "success": not failures,
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "failures": failures, "suites": sections,
    }
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{stage}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    if failures:
        raise ValidationFailed(stage, path, failures)
    for s in sections:
        log.info("validation %s: %d expectations passed on %d rows", s["suite"], s["expectations"], s["rows"])
    return path
