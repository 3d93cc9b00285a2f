"""Independent jobs in worker processes: the standard library's process pool, with one clear error.

Workers are *spawned* (a fresh interpreter each, never a fork of a process that already runs torch's thread
pools, which can hang). Each worker runs ``initializer(*initargs)`` once, so large shared inputs cross the
process boundary once per worker, not once per job. Results come back as the jobs finish, tagged with
their position in the input, so callers can log progress and still assemble them in a fixed order.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

from thawcast.errors import WorkerError

T = TypeVar("T")
R = TypeVar("R")


def map_processes(fn: Callable[[T], R], items: Sequence[T], workers: int,
                  initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[tuple[int, R]]:
    """Yield ``(i, fn(items[i]))`` for every item, in the order the jobs finish, from ``workers`` processes.

    ``fn`` and ``initializer`` must be importable module-level functions. An exception raised by ``fn``
    reaches the caller unchanged (the jobs not yet started are cancelled); a worker that dies raises
    :class:`WorkerError`.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    try:
        pending = {pool.submit(fn, item): i for i, item in enumerate(items)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    except BrokenProcessPool as exc:
        raise WorkerError(f"a worker process died before its job finished ({exc}); killed, or out of memory?"
                          " Fewer compute.workers need less memory") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def log_to_console() -> None:
    """Send a spawned process's log lines (it starts with no logging set up) to its inherited stderr, each
    tagged with the process name. For ``map_processes(..., initializer=log_to_console)``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``n`` inside the block, the process's own count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
