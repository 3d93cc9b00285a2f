"""Module-level jobs for the process-pool tests (a spawned worker imports them by name)."""

from __future__ import annotations

import os
import time

OFFSET = 0
BARRIER = None


def set_offset(offset: int, barrier=None) -> None:
    global OFFSET, BARRIER
    OFFSET, BARRIER = offset, barrier


def pid_plus_offset(x: int) -> tuple[int, int, int]:
    """The worker's pid, its initialised offset and ``x``; a worker's first job waits at the barrier until the
    other worker has one too, so both take part however slowly one of them started."""
    global BARRIER
    if BARRIER is not None:
        BARRIER.wait(timeout=120)
        BARRIER = None
    time.sleep(0.05)
    return os.getpid(), OFFSET, x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def data_error(x: int) -> int:
    from thawcast.errors import DataError

    raise DataError(f"file{x}.nc", "window file not found (run the windows stage)")


def die(x: int) -> int:
    os._exit(9)


def pid_plus_shared(shared: int, x: int) -> tuple[int, int]:
    """For ``with_shared``: this process's pid and the shared value plus the item."""
    return os.getpid(), shared + x
