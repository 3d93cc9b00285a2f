"""``make mutate``: mutation testing of the core library modules with mutmut, and the kill rate per module.

mutmut (configured in ``pyproject.toml``, ``[tool.mutmut]``) changes one operator, constant or call at a
time in the modules listed there and runs the fast unit tests that reach the changed function (tests
marked ``world``, which build the tiny world through the stages, are left out: a minute each per mutant).
A mutant is *killed* when a test fails, *survived* when every test still passes, *no tests* when no unit
test reaches the function at all. The kill rate counts timeouts as killed and everything else as alive,
so functions reached only through the stages lower it.

Usage: ``python tests/mutation.py`` (runs ``mutmut run``, resumable, then summarises), or
``python tests/mutation.py --summary`` (the summary of the last run only).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILLED = ("killed", "timeout")
GOAL = 0.85


def results() -> dict[str, str]:
    """``{mutant name: status}`` of every mutant mutmut knows."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep:
            status[name] = state
    return status


def module_of(mutant: str) -> str:
    """``thawcast.prep.windows.xǁScalerǁfit__mutmut_3`` -> ``thawcast.prep.windows``."""
    return ".".join(p for p in mutant.split(".") if not p.startswith("x"))


def summary(status: dict[str, str]) -> tuple[str, float]:
    """A Markdown table of mutants per module and state, and the overall kill rate."""
    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, state in status.items():
        by_module[module_of(name)][state] += 1
    states = ["killed", "timeout", "survived", "no tests", "not checked"]
    rows = ["| module | mutants | " + " | ".join(states) + " | kill rate |",
            "| --- | ---: | " + " | ".join("---:" for _ in states) + " | ---: |"]
    total = collections.Counter()
    for module in sorted(by_module):
        c = by_module[module]
        total += c
        n = sum(c.values())
        rows.append(f"| {module} | {n} | " + " | ".join(str(c[s]) for s in states)
                    + f" | {sum(c[s] for s in KILLED) / n:.0%} |")
    n = sum(total.values())
    rate = sum(total[s] for s in KILLED) / n if n else 0.0
    rows.append(f"| all | {n} | " + " | ".join(str(total[s]) for s in states) + f" | {rate:.0%} |")
    return "\n".join(rows), rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mutation testing of thawcast's core modules")
    parser.add_argument("--summary", action="store_true", help="summarise the last run without running mutmut")
    args = parser.parse_args(argv)
    if not args.summary:
        log = REPO / "mutants" / "mutmut-run.log"
        log.parent.mkdir(exist_ok=True)
        print(f"mutmut run (progress in {log.relative_to(REPO)}; resumable: run again to continue)", flush=True)
        t0 = time.perf_counter()
        with log.open("w") as fh:
            code = subprocess.run(["mutmut", "run"], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                  check=False).returncode
        print(f"mutmut run ended with exit {code} after {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        if code != 0:
            print(log.read_text()[-3000:], file=sys.stderr)
            return code
    table, rate = summary(results())
    print(table)
    print(f"\nkill rate {rate:.1%} (goal {GOAL:.0%}); surviving mutants: `mutmut results`, one shown with "
          "`mutmut show <name>`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
