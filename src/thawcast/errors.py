"""Exceptions that carry a message meant for the person running the pipeline."""

from __future__ import annotations

from pathlib import Path


def first_line(value: object, fallback: str, limit: int = 300) -> str:
    """The first line of ``str(value)`` (a library's exception: its long messages go on for pages), at most
    ``limit`` characters, or ``fallback`` (say, the exception's type name) when it says nothing."""
    lines = str(value).strip().splitlines()
    return (lines[0] if lines else fallback)[:limit]


class ThawcastError(Exception):
    """Base class: the CLI prints the message of these and exits non-zero (no traceback)."""


class ConfigError(ThawcastError):
    """``params.yaml`` is missing, malformed or holds an unknown key or a bad value."""


class DataError(ThawcastError):
    """An input file is unreadable or its content breaks an assumption (units, months, grid).

    Parameters
    ----------
    path
        The file (or folder) at fault; it is named first in the message.
    problem
        What is wrong, in words a user can act on.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return type(self), (self.path, self.problem)


class ValidationFailed(ThawcastError):
    """A Great Expectations suite failed; ``report`` is the path of the written report."""

    def __init__(self, stage: str, report: Path, failures: list[str]) -> None:
        self.stage = stage
        self.report = report
        self.failures = failures
        listed = "\n  - ".join(failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        super().__init__(
            f"data validation failed in stage '{stage}' ({len(failures)} failed expectation(s));"
            f" previous outputs were left untouched. Report: {report}\n  - {listed}{more}"
        )

    def __reduce__(self):
        return type(self), (self.stage, self.report, self.failures)


class ModelInputError(ThawcastError):
    """A batch does not fit the model: wrong shape or feature count, band outside the embedding, NaN."""


class WorkerError(ThawcastError):
    """A worker process died without an answer (killed, or out of memory)."""


class ServiceError(ThawcastError):
    """A server that ``params.yaml`` names (MLflow tracking server, tuning database, dask scheduler) does not
    answer or refuses the connection."""
