"""Periods of years that projections are summarised over: calendar decades to the end of the century."""

from __future__ import annotations

import itertools

from thawcast.errors import DataError


def decades(first_year: int, last_year: int, min_years: int = 5) -> list[tuple[int, int]]:
    """Calendar decades covering ``first_year..last_year``; an end piece shorter than ``min_years`` joins its
    neighbour (2024-2100 gives 2024-2029, 2030-2039, ..., 2090-2100)."""
    if last_year < first_year:
        raise DataError(None, f"no years in {first_year}..{last_year}")
    edges = [first_year, *range((first_year // 10 + 1) * 10, last_year + 1, 10), last_year + 1]
    bins = [(a, b - 1) for a, b in itertools.pairwise(edges)]
    if len(bins) > 1 and bins[-1][1] - bins[-1][0] + 1 < min_years:
        bins[-2:] = [(bins[-2][0], bins[-1][1])]
    if len(bins) > 1 and bins[0][1] - bins[0][0] + 1 < min_years:
        bins[:2] = [(bins[0][0], bins[1][1])]
    return bins


def label(years: tuple[int, int]) -> str:
    """``"2030-2039"``: how a period is named in metrics and tables."""
    return f"{years[0]}-{years[1]}"
