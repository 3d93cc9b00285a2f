"""Independent jobs in worker processes: the standard library's process pool, with one clear error.

Workers are *spawned* (a fresh interpreter each, never a fork of a process that already runs torch's thread
pools, which can hang). Each worker runs ``initializer(*initargs)`` once, so large shared inputs cross the
process boundary once per worker, not once per job. Results come back as the jobs finish, tagged with
their position in the input, so callers can log progress and still assemble them in a fixed order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from thawcast.errors import ServiceError, WorkerError

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")


def map_processes(fn: Callable[[T], R], items: Sequence[T], workers: int,
                  initializer: Callable[..., None] | None = None, initargs: tuple = (),
                  setting: str = "compute.workers") -> Iterator[tuple[int, R]]:
    """Yield ``(i, fn(items[i]))`` for every item, in the order the jobs finish, from ``workers`` processes.

    ``fn`` and ``initializer`` must be importable module-level functions. An exception raised by ``fn``
    reaches the caller unchanged (the jobs not yet started are cancelled; thawcast's errors survive the trip);
    a worker that dies raises :class:`WorkerError`, and the pool stops the other workers (jobs that finished
    before keep what they wrote). ``setting`` names the parameter that sets ``workers``, for that message.
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
                          f" Fewer {setting} need less memory") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def side_by_side(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[int, R]]:
    """``(i, fn(items[i]))`` for every item: in this process one after another when ``workers`` is 1, else
    from that many spawned processes that log to the console (:func:`map_processes`)."""
    if workers == 1:
        for i, item in enumerate(items):
            yield i, fn(item)
        return
    yield from map_processes(fn, items, workers, initializer=log_to_console)


_SHARED: object = None


def _keep_shared(shared: object) -> None:
    global _SHARED
    _SHARED = shared
    log_to_console()


def _call_shared(job: tuple[Callable, object]):
    fn, item = job
    return fn(_SHARED, item)


def with_shared(fn: Callable[[S, T], R], shared: S, items: Sequence[T], workers: int,
                setting: str = "compute.workers") -> Iterator[tuple[int, R]]:
    """``(i, fn(shared, items[i]))`` for every item: here one after another when ``workers`` is 1, else from that
    many spawned processes (:func:`map_processes`) that each receive ``shared`` once (large inputs cross the
    process boundary once per worker, not once per job) and log to the console. ``fn`` must be an importable
    module-level function."""
    if workers == 1:
        for i, item in enumerate(items):
            yield i, fn(shared, item)
        return
    yield from map_processes(_call_shared, [(fn, item) for item in items], workers, initializer=_keep_shared,
                             initargs=(shared,), setting=setting)


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


@contextmanager
def dask_client(scheduler: str, workers: int) -> Iterator[object | None]:
    """A ``dask.distributed`` client for the block, or None for dask's threads in this process.

    ``scheduler`` is ``compute.scheduler``: ``local`` starts a LocalCluster of ``workers`` single-threaded
    processes, closed after the block, with everything bound to 127.0.0.1: the scheduler, the workers and the
    scheduler's plain HTTP endpoints (health and metrics, which dask always serves, on port 8787 or the next free
    one; no dashboard pages). An address connects to that cluster's scheduler (left running). A scheduler that
    does not answer is :class:`ServiceError`. Inside the block the client is dask's default scheduler: any
    ``compute()`` runs on its workers.
    """
    if scheduler == "threads":
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        with (LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.WARNING) as cluster,
              Client(cluster) as client):
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ServiceError(f"compute.scheduler {scheduler}: the dask scheduler does not answer ({exc})") from None
    try:
        yield client
    finally:
        client.close()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is alive (another user's counts; a zombie, killed but not yet
    reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_id() -> str:
    """``host:pid`` of this process, as recorded on Optuna trials and MLflow runs to find those of dead ones."""
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_here(owner: str | None) -> bool:
    """Whether ``owner`` (a :func:`process_id`) names a process of this host that is gone."""
    host, _, pid = (owner or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))
