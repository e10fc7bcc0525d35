"""parpy.compare's Dask backends: "dask" (Dask's own map) and "parpy-dask"
(parpy.map(kernel, items, client=client)), on a LocalCluster the tests start
on 127.0.0.1, or one compare starts itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _util import local_cluster

import parpy
from parpy import comparison
from parpy.report import Skip

distributed = pytest.importorskip("distributed", reason="the Dask backends need distributed")
psutil = pytest.importorskip("psutil")  # (a dependency of distributed)

NS = list(range(2_000, 6_000, 100))  # 40 items of the book's loop


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster()
    with cluster, distributed.Client(cluster, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_a_client_adds_both_dask_backends_at_its_thread_count(client):
    report = parpy.compare(parpy.fib_iterative, NS, client=client, repeat=1, warmup=0)
    backends = {t.backend for t in report.timings}
    assert set(comparison.BACKENDS) - set(comparison.TOOL_BACKENDS) <= backends
    dask = [t for t in report.timings if t.backend in comparison.DASK_BACKENDS]
    assert sorted(t.backend for t in dask) == ["dask", "parpy-dask"]
    assert {t.workers for t in dask} == {2}  # the cluster's threads, not the sweep
    assert all(len(t.times) == 1 and t.times[0] > 0 for t in dask)
    assert "the given client (2 threads)" in report.meta["dask"]


def test_results_are_checked_against_serial(client, monkeypatch):
    # A wrong twin: "dask" runs it and disagrees with parpy's kernel... and
    # serial runs it too, so parpy-dask is the one that differs.
    monkeypatch.setattr(parpy.reference, "fib_iterative", lambda n: n)
    with pytest.raises(parpy.MismatchError) as caught:
        parpy.compare(parpy.fib_iterative, NS, client=client, backends="parpy-dask", repeat=1)
    assert caught.value.backend == "parpy-dask" and caught.value.position == 0


def test_without_a_client_compare_starts_and_closes_a_local_cluster():
    before = descendants()
    report = parpy.compare(
        "iterative", NS, backends="dask,parpy-dask", workers=[1, 2], repeat=1, warmup=0
    )
    timings = {(t.backend, t.workers): t for t in report.timings}
    assert set(timings) == {("serial", 1)} | {
        (b, w) for b in comparison.DASK_BACKENDS for w in (1, 2)
    }
    # One cluster per worker count, shared by both backends: the same startup.
    for w in (1, 2):
        assert timings["dask", w].startup == timings["parpy-dask", w].startup > 0
    assert "LocalCluster" in report.meta["dask"]
    started = [psutil.Process(pid) for pid in descendants() - before if psutil.pid_exists(pid)]
    _, alive = psutil.wait_procs(started, timeout=30)
    assert alive == []  # every worker process it started is gone


def test_python_callables_run_on_dask_but_not_parpy_dask(client):
    report = parpy.compare(lambda n: n * n, list(range(50)), client=client, repeat=1)
    assert any(t.backend == "dask" for t in report.timings)  # cloudpickle ships a lambda
    skipped = {s.backend: s for s in report.skipped}
    assert isinstance(skipped["parpy-dask"], Skip)
    assert "parpy.map(client=) runs parpy kernels" in skipped["parpy-dask"].reason


def test_the_dask_backends_are_opt_in():
    assert not set(comparison.DASK_BACKENDS) & set(comparison.backend_names(None, None))
    with pytest.raises(ValueError, match="client= is for the backends"):
        parpy.compare(parpy.fib, [1, 2], backends="parpy", client=object())
    with pytest.raises(TypeError, match="distributed.Client"):
        parpy.compare(parpy.fib, [1, 2], backends="dask", client=object())


def test_a_closed_client_is_refused_before_anything_starts(client):
    closed = distributed.Client(client.scheduler.address, timeout=60, set_as_default=False)
    closed.close(timeout=60)
    seen = []

    def work(x):
        seen.append(x)
        return x

    before = descendants()
    for backends in (None, "dask", "serial,parpy-dask"):
        with pytest.raises(ValueError, match=f"the Dask client {closed.id} is closed"):
            parpy.compare(work, [1, 2], backends=backends, client=closed, progress=False)
    assert seen == [] and descendants() == before


def test_without_dask_an_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    before = descendants()
    with pytest.raises(ImportError, match=r"pip install 'parpy\[dask\]'"):
        parpy.compare(parpy.fib, [1, 2], backends="serial,parpy-dask")
    assert descendants() == before  # nothing started


def test_cli_runs_the_dask_backends_on_a_scheduler(client):
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    env = dict(os.environ)
    if os.environ.get("PARPY_SANITIZER") == "address":
        # The command's interpreter exits with Dask's client threads still
        # holding CPython objects, which LeakSanitizer reports as leaks of
        # CPython's (no parpy frame); memory errors are still caught.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    command = [sys.executable, "-m", "parpy", "compare", "iterative", "--count", "20"]
    done = subprocess.run(
        [*command, "--repeat", "1", "--warmup", "0", "--dask", address, "--backends",
         "dask,parpy-dask", "--no-progress"],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["dask", "2"] in [row[:2] for row in rows]
    assert ["parpy-dask", "2"] in [row[:2] for row in rows]
    refused = subprocess.run(
        [*command, "--dask", address, "--backends", "parpy"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert refused.returncode == 2 and "client= is for the backends" in refused.stderr
