"""Fixtures: the suite runs once per implementation where both exist.

As in markupsafe's conftest, ``impl`` is parametrised over the native kernels
(``parpy.fib`` ...) and their pure-Python twins (``parpy.reference.fib`` ...),
so every correctness and bad-input test checks both.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable

import pytest
from _parity import WORKS, Work
from hypothesis import HealthCheck, settings

import parpy
import parpy.reference

# A shared, noisy machine: no per-example deadline. ``impl`` is a constant,
# so reusing it across the examples of a @given test is safe.
settings.register_profile(
    "parpy",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# A bounded fuzzing run for CI; HYPOTHESIS_PROFILE=long for a local soak.
settings.register_profile("long", parent=settings.get_profile("parpy"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "parpy"))

# The Ctrl-C tests interrupt this process (``_thread.interrupt_main``) and the
# children it starts (SIGINT), as a terminal's Ctrl-C does. A shell starts a
# background job with SIGINT ignored, which a child inherits and under which
# neither reaches Python: Python's own handler is put back, and a child,
# started from a process that handles SIGINT, gets the default again.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Set by .ci/sanitize to "address" or "thread" when parpy is built with a
# sanitizer and its runtime is preloaded.
SANITIZER = os.environ.get("PARPY_SANITIZER", "")

# Importing Dask starts threads that still hold CPython objects when the
# interpreter exits, which LeakSanitizer reports as leaks (CPython's
# allocations, no parpy frame) and which fail the ASan job: there the Dask
# tests are not even collected. The native code they reach is parpy.map's
# batch, which the ASan job runs everywhere else.
collect_ignore = (
    ["test_dask.py", "test_compare_dask.py", "test_compare_cfunc_dask.py"]
    if SANITIZER == "address"
    else []
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "memory_limits: sets resource limits or measures process memory; meaningless under a "
        "sanitizer runtime (shadow memory, quarantine), deselected when PARPY_SANITIZER is set",
    )
    config.addinivalue_line(
        "markers",
        "unsafe_under(*sanitizers, reason): cannot run under these sanitizer runtimes for a "
        "reason of the runtime's own (stated); deselected there",
    )


def pytest_collection_modifyitems(config, items):
    """Under a sanitizer, deselects (and lists) the tests that cannot run there."""
    if not SANITIZER:
        return
    keep, drop = [], []
    for item in items:
        unsafe = any(SANITIZER in mark.args for mark in item.iter_markers("unsafe_under"))
        if item.get_closest_marker("memory_limits") or unsafe:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        print(f"\nparpy: {len(drop)} tests deselected under PARPY_SANITIZER={SANITIZER}:")
        for item in drop:
            print(f"  {item.nodeid}")


@dataclasses.dataclass(frozen=True)
class Impl:
    name: str
    fib: Callable[[int], int]
    fib_iterative: Callable[[int], int]
    fib_recursive: Callable[[int], int]
    fib_mod: Callable[[int, int], int]
    # fib_recursive is exponential: the largest n a test should ask for.
    recursive_max_n: int

    def __getitem__(self, kernel: str) -> Callable[..., int]:
        return getattr(self, kernel)


NATIVE = Impl(
    "native",
    parpy.fib,
    parpy.fib_iterative,
    parpy.fib_recursive,
    parpy.fib_mod,
    recursive_max_n=30,
)
REFERENCE = Impl(
    "reference",
    parpy.reference.fib,
    parpy.reference.fib_iterative,
    parpy.reference.fib_recursive,
    parpy.reference.fib_mod,
    recursive_max_n=22,
)
IMPLS = {impl.name: impl for impl in (NATIVE, REFERENCE)}


@pytest.fixture(params=list(IMPLS))
def impl(request) -> Impl:
    """The native kernels, then their pure-Python twins."""
    return IMPLS[request.param]


@pytest.fixture(params=list(WORKS))
def work(request) -> Work:
    """For the pool and executor tests: a plain Python function, parpy's
    pure-Python twins, parpy's native kernels (see _parity.py)."""
    return WORKS[request.param]


@pytest.fixture
def restore_num_threads():
    """Puts parpy's default thread count back after a test that changes it."""
    yield
    parpy.set_num_threads(None)
