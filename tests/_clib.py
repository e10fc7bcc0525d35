"""A shared library of users' own C functions (tests/c/userfuncs.c), built once per test
session with the system's C compiler, for the tests of Kernel.from_cfunc and from_library.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest
from _util import REPO

SOURCE = REPO / "tests" / "c" / "userfuncs.c"

# What the ASan job leaves out: its LeakSanitizer reports what these never free at exit.
NUMPY = pytest.mark.unsafe_under(
    "address",
    reason="importing NumPy (which Numba imports) leaves objects that it never frees at exit, "
    "which LeakSanitizer reports",
)
DASK = pytest.mark.unsafe_under(
    "address",
    reason="importing Dask starts threads that still hold CPython objects at exit, which "
    "LeakSanitizer reports (as for the Dask test modules)",
)

# The functions, their signatures and their pure-Python references.
MASK = (1 << 64) - 1


def _wrap_i64(v: int) -> int:
    v &= MASK
    return v - (1 << 64) if v >= 1 << 63 else v


def _collatz(n: int) -> int:
    steps = 0
    while n > 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


FUNCTIONS = {
    "square_plus_one": ("float64(float64)", lambda x: x * x + 1.0),
    "identity_f64": ("float64(float64)", lambda x: x),
    "identity_i64": ("int64(int64)", lambda x: x),
    "identity_u64": ("uint64(uint64)", lambda x: x),
    "add_i64": ("int64(int64, int64)", lambda a, b: _wrap_i64(a + b)),
    "mix": ("float64(uint64, float64, int64)", lambda a, b, c: float(a % 1000) * b - float(c)),
    "collatz_steps": ("uint64(uint64)", _collatz),
}


def _checked_inverse(x: float) -> tuple[int, float | None]:
    return (3, None) if x == 0 else (0, 1.0 / x)


def _checked_div(a: int, b: int) -> tuple[int, int | None]:
    if b == 0:
        return -1, None
    if a == -(2**63) and b == -1:
        return -2, None
    q = abs(a) // abs(b)
    return 0, q if (a < 0) == (b < 0) else -q


def _checked_mix(a: int, b: float, c: int) -> tuple[int, int | None]:
    if not b >= 0:
        return 7, None
    return 0, (a * (c & MASK) + int(min(b, 1e18))) & MASK


# Functions that can fail: the signature, and a reference giving (status, result).
FAILING = {
    "checked_inverse": ("int(float64, float64*)", _checked_inverse),
    "checked_div": ("int(int64, int64, int64*)", _checked_div),
    "checked_mix": ("int(uint64, float64, int64, uint64*)", _checked_mix),
}


@functools.cache
def library() -> Path:
    """The built library (in a temporary folder that lives as long as the process)."""
    folder = Path(tempfile.mkdtemp(prefix="parpy-userfuncs-"))
    atexit.register(shutil.rmtree, folder, True)
    target = folder / "libuserfuncs.so"
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"
    subprocess.run(
        [shutil.which(cc) or cc, "-O2", "-shared", "-fPIC", str(SOURCE), "-o", str(target)],
        check=True,
        timeout=120,
        env=compiler_env(),
    )
    return target


def compiler_env() -> dict[str, str]:
    """The environment for a compiler the tests run: without the sanitizer runtime that
    .ci/sanitize preloads, whose leak check at exit would fail the compiler itself."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


@functools.cache
def cdll() -> ctypes.CDLL:
    return ctypes.CDLL(str(library()))


_CTYPES = {"int64": ctypes.c_int64, "uint64": ctypes.c_uint64, "float64": ctypes.c_double}


def _ctype(name: str):
    name = name.strip()
    if name == "int":
        return ctypes.c_int
    if name.endswith("*"):
        return ctypes.POINTER(_CTYPES[name.rstrip("*")])
    return _CTYPES[name]


def ctypes_function(name: str, signature: str | None = None):
    """The function as a ctypes function with argtypes and restype set from its signature."""
    signature = signature or {**FUNCTIONS, **FAILING}[name][0]
    result, _, args = signature.partition("(")
    fn = getattr(cdll(), name)
    fn.restype = _ctype(result)
    fn.argtypes = [_ctype(a) for a in args.rstrip(")").split(",")]
    return fn


def kernel(name: str, how: str = "library"):
    """The function ``name`` as a parpy kernel: from_library, or from_cfunc of its ctypes
    function ("ctypes") or of its address with the signature ("address")."""
    import parpy

    signature = {**FUNCTIONS, **FAILING}[name][0]
    if how == "library":
        return parpy.Kernel.from_library(library(), name, signature)
    if how == "ctypes":
        return parpy.Kernel.from_cfunc(ctypes_function(name))
    assert how == "address", how
    address = ctypes.cast(getattr(cdll(), name), ctypes.c_void_p).value
    return parpy.Kernel.from_cfunc(address, signature, name=name)


_PyCapsule_New = ctypes.PYFUNCTYPE(
    ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p
)(("PyCapsule_New", ctypes.pythonapi))
_NAMES: list[bytes | None] = []  # a capsule points at its name: they must outlive it


def capsule(symbol: str, name: bytes | None):
    """A capsule of the library's function ``symbol``, named ``name`` (as Cython's
    __pyx_capi__ names one by its C declaration)."""
    _NAMES.append(name)
    address = ctypes.cast(getattr(cdll(), symbol), ctypes.c_void_p).value
    return _PyCapsule_New(address, name, None)
