"""Jobs in worker processes: every result once, the initializer run in each worker, failures named."""

from __future__ import annotations

import multiprocessing
import os

import pytest

import jobs
from thawcast.config import ComputeConfig, parse_config, usable_cores
from thawcast.errors import ConfigError, DataError, WorkerError
from thawcast.parallel import map_processes


def test_two_workers_share_the_jobs_and_each_ran_the_initializer():
    barrier = multiprocessing.get_context("spawn").Barrier(2)
    out = dict(map_processes(jobs.pid_plus_offset, list(range(6)), 2, initializer=jobs.set_offset,
                             initargs=(5, barrier)))
    assert sorted(out) == list(range(6))
    assert [x for _, _, x in (out[i] for i in range(6))] == list(range(6))  # tagged with the input position
    pids = {pid for pid, _, _ in out.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # two other processes did the work
    assert {offset for _, offset, _ in out.values()} == {5}


def test_a_job_error_reaches_the_caller_and_a_dead_worker_is_named():
    with pytest.raises(ValueError, match="three is not allowed"):
        list(map_processes(jobs.fail_on_three, [1, 2, 3, 4], 2))
    with pytest.raises(DataError, match=r"file2\.nc: window file not found") as err:  # our errors survive the trip
        list(map_processes(jobs.data_error, [2], 1))
    assert err.value.path.name == "file2.nc"
    with pytest.raises(WorkerError, match="worker process died.*Fewer tuning.workers"):
        list(map_processes(jobs.die, [1], 1, setting="tuning.workers"))
    with pytest.raises(ValueError, match="at least 1"):
        list(map_processes(jobs.die, [1], 0))


def test_jobs_with_a_shared_input_run_here_or_in_workers_with_the_same_results():
    from thawcast.parallel import with_shared

    here = dict(with_shared(jobs.pid_plus_shared, 10, [1, 2, 3, 4], 1))
    there = dict(with_shared(jobs.pid_plus_shared, 10, [1, 2, 3, 4], 2))
    assert {i: v for i, (_, v) in here.items()} == {i: v for i, (_, v) in there.items()} == {0: 11, 1: 12, 2: 13, 3: 14}
    assert {pid for pid, _ in here.values()} == {os.getpid()}
    assert os.getpid() not in {pid for pid, _ in there.values()}


def test_workers_never_exceed_the_jobs_or_the_cores():
    assert ComputeConfig(workers=4).worker_count(3) == 3
    assert ComputeConfig(workers=1).worker_count(40) == 1
    assert ComputeConfig().worker_count(1000) == usable_cores() >= 1
    for bad in (0, -2, "many"):
        with pytest.raises(ConfigError, match="workers"):
            parse_config({"compute": {"workers": bad}})
    with pytest.raises(ConfigError, match="threads"):
        parse_config({"training": {"threads": 0}})


def test_band_means_on_a_two_worker_local_cluster_are_the_threads_bits(tiny_world, tiny_cfg, tmp_path):
    """compute.scheduler changes where the work runs, never the result (so no DVC stage lists it)."""
    import xarray as xr

    from conftest import layout
    from thawcast.stages import bands

    out = {}
    for scheduler in ("threads", "local"):
        cfg = tiny_cfg.model_copy(update={"compute": ComputeConfig(workers=2, scheduler=scheduler)})
        paths = layout(tmp_path / scheduler, raw=tiny_world / "raw")
        bands.run(cfg, paths)
        out[scheduler] = sorted(paths.bands.glob("*.nc"))
    assert [p.name for p in out["threads"]] == [p.name for p in out["local"]] and len(out["local"]) >= 2
    for a, b in zip(out["threads"], out["local"], strict=True):
        with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
            xr.testing.assert_equal(da, db)  # exact values, every variable and coordinate


def test_the_cell_store_on_a_two_worker_local_cluster_is_the_threads_bytes(tiny_world, tiny_cfg, tmp_path,
                                                                             monkeypatch):
    """The cells stage reads its chunks on the cluster's workers (tasks ran there, not in this process) and writes
    the same bytes."""
    from contextlib import contextmanager

    from distributed import get_task_stream

    from conftest import layout
    from thawcast import parallel
    from thawcast.stages import cells

    ran = {}

    @contextmanager
    def recording(scheduler, workers):
        with parallel.dask_client(scheduler, workers) as client:
            if client is None:
                yield None
                return
            with get_task_stream(client) as stream:
                yield client
            ran["cluster"] = set(client.scheduler_info()["workers"])
            ran["tasks"] = len(stream.data)
            ran["workers"] = {t["worker"] for t in stream.data}

    monkeypatch.setattr(cells, "dask_client", recording)
    out = {}
    for scheduler in ("threads", "local"):
        cfg = tiny_cfg.model_copy(update={"compute": ComputeConfig(scheduler=scheduler, workers=2)})
        paths = layout(tmp_path / scheduler, raw=tiny_world / "raw")
        cells.run(cfg, paths)
        out[scheduler] = paths
    assert ran["tasks"] > 0 and ran["workers"] <= ran["cluster"] and ran["workers"], ran  # the cluster read chunks
    for name in ("cell_store", "static_cells"):
        a, b = (getattr(out[s], name).read_bytes() for s in ("threads", "local"))
        assert a == b, name


def test_the_local_cluster_listens_on_localhost_only_and_is_gone_after_the_block():
    """compute.scheduler local: the scheduler, its HTTP endpoints and every worker listen on 127.0.0.1 only."""
    import os
    import urllib.error
    import urllib.request

    import psutil

    from thawcast.parallel import dask_client

    def listening():
        return {c.laddr for c in psutil.Process(os.getpid()).net_connections(kind="tcp") if c.status == "LISTEN"}

    before = listening()
    with dask_client("local", 2) as client:
        workers = client.scheduler_info()["workers"]
        here = listening() - before  # the scheduler (and its HTTP server) run in this process
        assert len(workers) == 2 and len(here) >= 1
        assert all(a.startswith("tcp://127.0.0.1:") for a in [client.scheduler.address, *workers]), workers
        assert {a.ip for a in here} == {"127.0.0.1"}, here
        # the scheduler's HTTP server (dask always runs one) answers health checks but serves no dashboard
        http = client.scheduler_info()["services"]["dashboard"]
        assert urllib.request.urlopen(f"http://127.0.0.1:{http}/health", timeout=10).read() == b"ok"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=10)
    assert client.status == "closed" and not listening() - before


def test_a_dask_scheduler_that_does_not_answer_is_one_clear_error():
    import socket
    import time

    from thawcast.errors import ServiceError
    from thawcast.parallel import dask_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(ServiceError, match=f"compute.scheduler tcp://127.0.0.1:{port}: the dask scheduler"), \
            dask_client(f"tcp://127.0.0.1:{port}", 1):
        pass
    assert time.perf_counter() - t0 < 60
    with pytest.raises(ConfigError, match="scheduler must be local, threads or a scheduler address"):
        parse_config({"compute": {"scheduler": "my-cluster:8786"}})
