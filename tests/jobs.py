"""Module-level jobs for the process-pool tests (a spawned worker imports them by name)."""

from __future__ import annotations

import os
import time

OFFSET = 0


def set_offset(offset: int) -> None:
    global OFFSET
    OFFSET = offset


def pid_plus_offset(x: int) -> tuple[int, int, int]:
    """The worker's pid, its initialised offset and ``x`` after a short nap (so both workers get jobs)."""
    time.sleep(0.2)
    return os.getpid(), OFFSET, x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def die(x: int) -> int:
    os._exit(9)
