"""parpy.compare's Dask backends on a user's C function: "dask" calls it
through ctypes on the Dask workers, which get a from_library kernel as
(path, symbol, signature); a from_cfunc kernel skips both Dask backends."""

from __future__ import annotations

import _clib
import pytest
from _util import local_cluster

import parpy

distributed = pytest.importorskip("distributed", reason="the Dask backends need distributed")

FLOATS = [x / 7 for x in range(-500, 500)]


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster()
    with cluster, distributed.Client(cluster, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


@pytest.mark.timeout(180)
def test_a_library_function_on_the_dask_workers(client):
    kernel = parpy.Kernel.from_library(_clib.library(), "square_plus_one", "float64(float64)")
    report = parpy.compare(
        kernel, FLOATS, backends="serial,dask,parpy-dask", client=client, repeat=1, warmup=0
    )
    assert report.skipped == ()  # and both checked against serial's results
    assert sorted(t.backend for t in report.timings) == ["dask", "parpy-dask", "serial"]
    assert report.meta["python_runs"] == "square_plus_one(x) through ctypes"


@pytest.mark.timeout(60)
def test_a_cfunc_kernel_skips_both_dask_backends(client):
    kernel = parpy.Kernel.from_cfunc(_clib.ctypes_function("square_plus_one"))
    report = parpy.compare(
        kernel, FLOATS, backends="serial,dask,parpy-dask", client=client, repeat=1, warmup=0
    )
    skipped = {s.backend: s.reason for s in report.skipped}
    assert sorted(skipped) == ["dask", "parpy-dask"]
    for reason in skipped.values():
        assert reason.startswith("square_plus_one does not pickle"), reason
    assert [t.backend for t in report.timings] == ["serial"]
