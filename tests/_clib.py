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

from _util import REPO

SOURCE = REPO / "tests" / "c" / "userfuncs.c"

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


def ctypes_function(name: str, signature: str | None = None):
    """The function as a ctypes function with argtypes and restype set from its signature."""
    signature = signature or FUNCTIONS[name][0]
    result, _, args = signature.partition("(")
    fn = getattr(cdll(), name)
    fn.restype = _CTYPES[result.strip()]
    fn.argtypes = [_CTYPES[a.strip()] for a in args.rstrip(")").split(",")]
    return fn
