"""parpy.Pool and parpy.ThreadPoolExecutor against multiprocessing.Pool,
multiprocessing.pool.ThreadPool and concurrent.futures, side by side.

    python -m pytest benchmarks --benchmark-only

One group per workload (see workloads.pool_candidates); the pools live for
the whole run, so only the work is timed, not starting workers.
"""

from __future__ import annotations

import pytest
from workloads import POOL_WORKLOADS, pool_candidates

WORKLOADS = {workload: pool_candidates(workload) for workload in POOL_WORKLOADS}
# multiprocessing.Pool with chunksize=1 takes seconds per call: few rounds.
SLOW = {"multiprocessing.Pool-chunksize-1"}


@pytest.mark.parametrize(
    ("group", "name"), [(group, name) for group, calls in WORKLOADS.items() for name in calls]
)
def bench_pool(benchmark, group, name):
    benchmark.group = f"pool: {group}"
    call = WORKLOADS[group][name]
    if name in SLOW:
        benchmark.pedantic(call, rounds=2, iterations=1, warmup_rounds=0)
    else:
        benchmark(call)
