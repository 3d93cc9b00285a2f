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


def test_workers_never_exceed_the_jobs_or_the_cores():
    assert ComputeConfig(workers=4).worker_count(3) == 3
    assert ComputeConfig(workers=1).worker_count(40) == 1
    assert ComputeConfig().worker_count(1000) == usable_cores() >= 1
    for bad in (0, -2, "many"):
        with pytest.raises(ConfigError, match="workers"):
            parse_config({"compute": {"workers": bad}})
    with pytest.raises(ConfigError, match="threads"):
        parse_config({"training": {"threads": 0}})
