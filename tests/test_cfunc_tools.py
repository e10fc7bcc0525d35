"""Functions compiled by Numba, cffi and Cython as kernels (Kernel.from_cfunc).

A Numba ``@cfunc``, a cffi function (a pointer in ABI mode, a lib's function
in API mode) and a PyCapsule named by its C declaration (as Cython's
``__pyx_capi__`` exports a ``cdef api`` function) each carry their
signature: the kernel reads it, checks a given one against it, computes what
a Python reference does on edge and random inputs, one call at a time and
through ``parpy.map`` over lists and buffers, runs in parpy's pools, and
releases the GIL while a batch runs. The C functions are those of
tests/c/userfuncs.c (tests/_clib.py), but for Numba's, defined here.

NumPy, and Numba, which imports it, are imported only by the tests that use
them (marked NUMPY): importing NumPy, like a cffi API-mode module (CFFI_API),
leaves objects that it never frees at exit, which the ASan job's
LeakSanitizer reports, so those tests do not run there.
"""

from __future__ import annotations

import array
import ctypes
import functools
import importlib.util
import math
import random
import struct
import subprocess
import sys
import threading
import time

import _clib
import cffi
import pytest

import parpy

T = 60  # seconds: every blocking wait

I64_MIN, I64_MAX, U64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1

# ---- inputs, references and the checks every kind of function goes through -------------

EDGES = {
    "float64": [
        0.0,
        -0.0,
        1.0,
        -1.5,
        math.nan,
        -math.nan,
        math.inf,
        -math.inf,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        2.0**53 + 1,
    ],
    "int64": [I64_MIN, I64_MIN + 1, -(1 << 32), -1, 0, 1, 1 << 32, I64_MAX - 1, I64_MAX],
    "uint64": [0, 1, 999, 1000, (1 << 32) - 1, I64_MAX, 1 << 63, U64_MAX - 1, U64_MAX],
}
FORMATS = {"int64": "q", "uint64": "Q", "float64": "d"}  # array.array's and memoryview's

CFFI_API = pytest.mark.unsafe_under(
    "address",
    reason="a cffi API-mode module leaves objects that it never frees at exit, which "
    "LeakSanitizer reports",
)
NUMPY = _clib.NUMPY


def random_values(kind: str, n: int, rng: random.Random) -> list:
    if kind == "float64":  # any bit pattern: subnormals, NaNs and infinities included
        return [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(n)]
    if kind == "int64":
        return [rng.randrange(I64_MIN, I64_MAX + 1) for _ in range(n)]
    return [rng.getrandbits(64) for _ in range(n)]


def values(kind: str, n: int, rng: random.Random) -> list:
    """The edge values of ``kind``, then random ones: ``n`` in all."""
    return (EDGES[kind] + random_values(kind, n, rng))[:n]


def parse(signature: str) -> tuple[str, list[str]]:
    result, _, args = signature.partition("(")
    return result, [a.strip() for a in args.rstrip(")").split(",")]


def rows(signature: str, n: int = 400, seed: int = 21) -> list[tuple]:
    """Argument tuples: every edge value of each argument, among random ones."""
    rng = random.Random(seed)
    columns = []
    for kind in parse(signature)[1]:
        column = values(kind, n, rng)
        rng.shuffle(column)
        columns.append(column)
    return list(zip(*columns, strict=True))


def same(got, expected) -> bool:
    """Equal, as the same type; NaN equals NaN; -0.0 is not 0.0."""
    if isinstance(expected, float):
        if math.isnan(expected):
            return isinstance(got, float) and math.isnan(got)
        return (
            type(got) is float
            and got == expected
            and math.copysign(1, got) == math.copysign(1, expected)
        )
    return type(got) is int and got == expected


def assert_all_same(got, expected, what: str) -> None:
    got = list(got)
    assert len(got) == len(expected), what
    bad = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if not same(g, e)]
    assert not bad, (
        f"{what}: items {bad[:10]}: {[got[i] for i in bad[:3]]} != {[expected[i] for i in bad[:3]]}"
    )


def check_kernel(kernel: parpy.Kernel, signature: str, reference) -> None:
    """The kernel computes ``reference`` one call at a time and through parpy.map over a
    list, an array.array and a memoryview (trailing arguments bound)."""
    result_kind, arg_kinds = parse(signature)
    assert kernel.signature == signature
    args = rows(signature)
    expected = [reference(*row) for row in args]
    assert_all_same([kernel(*row) for row in args], expected, "calls")
    items = args if len(arg_kinds) > 1 else [row[0] for row in args]
    for workers in (1, 2):
        assert_all_same(parpy.map(kernel, items, workers=workers), expected, "map over a list")
    each, first, expected = over_buffers(kernel, signature, reference)
    code, result_code = FORMATS[arg_kinds[0]], FORMATS[result_kind]
    got = parpy.map(each, array.array(code, first), workers=2)
    assert isinstance(got, array.array) and got.typecode == result_code
    assert_all_same(got.tolist(), expected, "map over an array.array")
    got = parpy.map(each, memoryview(array.array(code, first)))
    assert isinstance(got, memoryview) and got.format == result_code
    assert_all_same(got.tolist(), expected, "map over a memoryview")
    out = array.array(result_code, bytes(8 * len(first)))
    assert parpy.map(each, array.array(code, first), out=out) is out
    assert_all_same(out.tolist(), expected, "map into out=")


def over_buffers(kernel: parpy.Kernel, signature: str, reference):
    """For a map over a buffer of the first argument: (the kernel with the others bound to
    one row's, the first arguments, the expected results)."""
    args = rows(signature)
    first, bound = [row[0] for row in args], args[0][1:]
    return (
        kernel.bind(*bound) if bound else kernel,
        first,
        [reference(x, *bound) for x in first],
    )


def check_numpy(kernel: parpy.Kernel, signature: str, reference) -> None:
    """parpy.map of the kernel over a NumPy array, and into one, computes ``reference``."""
    import numpy as np

    result_kind, arg_kinds = parse(signature)
    each, first, expected = over_buffers(kernel, signature, reference)
    got = parpy.map(each, np.array(first, dtype=arg_kinds[0]), workers=2)
    assert isinstance(got, np.ndarray) and got.dtype == np.dtype(result_kind)
    assert_all_same(got.tolist(), expected, "map over a NumPy array")
    out = np.zeros(len(first), dtype=result_kind)
    assert parpy.map(each, np.array(first, dtype=arg_kinds[0]), out=out) is out
    assert_all_same(out.tolist(), expected, "map into a NumPy array")


def spun(ms: float) -> float:
    """What tests/c/userfuncs.c's spin_ms (and Numba's spin) returns: its rounds."""
    return float(int(ms * 200000.0))


def check_signature_checks(fn, signature: str, other: str) -> None:
    """A given signature is checked against the one ``fn`` carries."""
    assert parpy.Kernel.from_cfunc(fn, signature).signature == signature
    assert parpy.Kernel.from_cfunc(fn, signature.replace(", ", ",")).signature == signature
    with pytest.raises(ValueError, match="does not match"):
        parpy.Kernel.from_cfunc(fn, other)


# ---- Numba ------------------------------------------------------------------------------


# name: (signature, reference); numba_cfuncs() compiles the functions.
NUMBA = {
    "sq": ("float64(float64)", lambda x: x * x + 1.0),
    "shift_xor": ("int64(int64)", lambda x: x ^ (x >> 3)),
    "third": ("uint64(uint64)", lambda x: x // 3 + (x & 1)),
    "halves": ("int64(int64, int64)", lambda a, b: (a >> 1) + (b >> 1)),
    "mix": ("float64(uint64, float64, int64)", _clib.FUNCTIONS["mix"][1]),
    "spin": ("float64(float64)", spun),
}


@functools.cache
def numba_cfuncs() -> dict:
    """NUMBA's functions as Numba cfuncs, by name."""
    import numba
    import numpy as np

    def sq(x):
        return x * x + 1.0

    def shift_xor(x):
        return x ^ (x >> 3)

    def third(x):  # uint64 with an int64 literal would be float64 in Numba
        return x // np.uint64(3) + (x & np.uint64(1))

    def halves(a, b):
        return (a >> 1) + (b >> 1)

    def mix(a, b, c):
        return float(a % np.uint64(1000)) * b - float(c)

    def spin(ms):  # about ms / 5 milliseconds: the C loop's rounds, without its volatile
        acc = 0.0
        for _ in range(int(ms * 200000.0)):
            acc += 1.0
        return acc

    functions = {f.__name__: f for f in (sq, shift_xor, third, halves, mix, spin)}
    return {name: numba.cfunc(NUMBA[name][0])(f) for name, f in functions.items()}


def numba_kernel(name: str) -> parpy.Kernel:
    return parpy.Kernel.from_cfunc(numba_cfuncs()[name])


@NUMPY
@pytest.mark.parametrize("name", [n for n in NUMBA if n != "spin"])
def test_a_numba_cfunc_computes_its_reference(name):
    signature, reference = NUMBA[name]
    kernel = numba_kernel(name)
    assert kernel.__name__ == name
    check_kernel(kernel, signature, reference)
    check_numpy(kernel, signature, reference)


@NUMPY
def test_a_numba_cfunc_checks_a_given_signature():
    cfuncs = numba_cfuncs()
    check_signature_checks(cfuncs["sq"], "float64(float64)", "int64(int64)")
    check_signature_checks(
        cfuncs["mix"], "float64(uint64, float64, int64)", "float64(int64, float64, int64)"
    )
    with pytest.raises(ValueError, match="does not match"):
        parpy.Kernel.from_cfunc(cfuncs["halves"], "int64(int64)")
    assert parpy.Kernel.from_cfunc(cfuncs["sq"], name="other").__name__ == "other"


@NUMPY
@pytest.mark.parametrize(
    ("signature", "match"),
    [
        ("void(float64)", "returns nothing"),
        ("int32(int32)", "c_int"),
        ("float32(float32)", "c_float"),
        ("float64()", "takes 0 arguments"),
        ("float64(float64, float64, float64, float64)", "takes 4 arguments"),
        ("float64(" + ", ".join(["float64"] * 40) + ")", "takes 40 arguments"),
    ],
)
def test_a_numba_cfunc_of_another_signature_is_refused(signature, match):
    import numba

    result, args = signature.split("(")
    params = ", ".join(f"a{i}" for i in range(args.count(",") + (args != ")")))
    fn = numba.cfunc(signature)(eval(f"lambda {params}: {'None' if result == 'void' else 1}"))
    with pytest.raises(ValueError, match=match):
        parpy.Kernel.from_cfunc(fn)


@NUMPY
def test_a_numba_kernel_runs_in_parpy_pool():
    sq, halves = numba_kernel("sq"), numba_kernel("halves")
    xs = values("float64", 300, random.Random(1))
    pairs = rows("int64(int64, int64)", 300)
    expected = [NUMBA["sq"][1](x) for x in xs]
    half = NUMBA["halves"][1]
    with parpy.Pool(2) as pool:
        assert_all_same(pool.map_async(sq, xs).get(T), expected, "Pool.map")
        assert_all_same(pool.imap(sq, xs, 7), expected, "Pool.imap")
        assert same(pool.apply_async(sq, (3.0,)).get(T), 10.0)
        assert_all_same(
            pool.starmap_async(halves, pairs).get(T), [half(a, b) for a, b in pairs], "starmap"
        )
        assert_all_same(
            pool.map_async(halves.bind(5), [a for a, _ in pairs]).get(T),
            [half(a, 5) for a, _ in pairs],
            "Pool.map of a bound kernel",
        )
        pool.close()
        pool.join()


@NUMPY
def test_a_numba_kernel_runs_in_thread_pool_executor():
    kernel = numba_kernel("third")
    xs = values("uint64", 300, random.Random(2))
    expected = [NUMBA["third"][1](x) for x in xs]
    with parpy.ThreadPoolExecutor(2) as executor:
        futures = [executor.submit(kernel, x) for x in xs[:50]]
        assert_all_same([f.result(timeout=T) for f in futures], expected[:50], "submit")
        assert_all_same(executor.map(kernel, xs, timeout=T), expected, "map")
        assert_all_same(executor.map(kernel, xs, timeout=T, chunksize=16), expected, "chunks")


# ---- cffi -------------------------------------------------------------------------------

# tests/c/userfuncs.c's functions, declared with several C names of the same types.
CFFI_CDEF = """
double square_plus_one(double x);
double identity_f64(double);
long identity_i64(long x);
unsigned long long identity_u64(unsigned long long);
int64_t add_i64(int64_t a, int64_t b);
double mix(uint64_t a, double b, int64_t c);
uint64_t collatz_steps(uint64_t n);
double spin_ms(double ms);
"""
# Collatz's 3n + 1 wraps in C beyond this; the reference does not.
SMALL = {"collatz_steps": 1 << 20}


@functools.cache
def cffi_abi():
    """tests/c/userfuncs.c's library opened by cffi in ABI mode: (ffi, lib)."""
    ffi = cffi.FFI()
    ffi.cdef(CFFI_CDEF)
    return ffi, ffi.dlopen(str(_clib.library()))


# Builds CFFI_CDEF's functions in API mode: argv[1], the folder; argv[2], the C source.
CFFI_BUILD = """
import sys, cffi
ffi = cffi.FFI()
ffi.cdef(sys.stdin.read())
ffi.set_source("_parpy_userfuncs_cffi", open(sys.argv[2]).read())
print(ffi.compile(tmpdir=sys.argv[1]))
"""


def load_extension(name: str, path) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cffi_api(tmp_path_factory):
    """tests/c/userfuncs.c compiled by cffi in API mode: the module (ffi, lib)."""
    folder = tmp_path_factory.mktemp("cffi-api")
    built = subprocess.run(
        [sys.executable, "-c", CFFI_BUILD, str(folder), str(_clib.SOURCE)],
        input=CFFI_CDEF,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=_clib.compiler_env(),
    )
    return load_extension("_parpy_userfuncs_cffi", built.stdout.strip().splitlines()[-1])


def clib_check(kernel: parpy.Kernel, name: str) -> None:
    """check_kernel for the function ``name`` of tests/c/userfuncs.c."""
    signature, reference = _clib.FUNCTIONS[name]
    if name in SMALL:
        args = [x % SMALL[name] for x in values("uint64", 200, random.Random(3))]
        assert kernel.signature == signature
        assert_all_same(parpy.map(kernel, args, workers=2), [reference(x) for x in args], name)
        return
    check_kernel(kernel, signature, reference)


@pytest.mark.parametrize("name", list(_clib.FUNCTIONS))
def test_a_cffi_abi_function_pointer_computes_its_reference(name):
    ffi, lib = cffi_abi()
    pointer = getattr(lib, name)
    assert ffi.typeof(pointer).kind == "function"
    clib_check(parpy.Kernel.from_cfunc(pointer, name=name), name)


@pytest.mark.parametrize("name", ["square_plus_one", "add_i64", "mix"])
def test_a_cffi_addressof_pointer_computes_its_reference(name):
    ffi, lib = cffi_abi()
    clib_check(parpy.Kernel.from_cfunc(ffi.addressof(lib, name), name=name), name)


@CFFI_API
@pytest.mark.parametrize("name", list(_clib.FUNCTIONS))
def test_a_cffi_api_mode_function_computes_its_reference(cffi_api, name):
    # In API mode a lib's function is a built-in function, not a cdata pointer.
    function = getattr(cffi_api.lib, name)
    assert type(function).__name__ == "builtin_function_or_method"
    kernel = parpy.Kernel.from_cfunc(function)
    assert kernel.__name__ == name
    clib_check(kernel, name)
    pointer = cffi_api.ffi.addressof(cffi_api.lib, name)
    assert parpy.Kernel.from_cfunc(pointer).signature == kernel.signature


def test_a_cffi_function_checks_a_given_signature():
    ffi, lib = cffi_abi()
    check_signature_checks(
        lib.mix, "float64(uint64, float64, int64)", "float64(uint64, float64, uint64)"
    )
    check_signature_checks(lib.identity_i64, "int64(int64)", "uint64(uint64)")


@CFFI_API
def test_a_cffi_api_mode_function_checks_a_given_signature(cffi_api):
    check_signature_checks(
        cffi_api.lib.add_i64, "int64(int64, int64)", "int64(int64, int64, int64)"
    )
    # Nor is a lib, or its ffi, a function.
    for other in (cffi_api.lib, cffi_api.ffi):
        with pytest.raises(TypeError, match="from_cfunc\\(\\) takes"):
            parpy.Kernel.from_cfunc(other)


def test_a_cffi_callback_runs_as_a_kernel():
    # A Python function behind a C pointer: cffi takes the GIL for each call.
    ffi = cffi.FFI()
    callback = ffi.callback("double(double)", lambda x: 2.0 * x)
    kernel = parpy.Kernel.from_cfunc(callback)
    assert kernel.signature == "float64(float64)"
    xs = [float(i) for i in range(200)]
    assert parpy.map(kernel, xs, workers=2) == [2.0 * x for x in xs]


def test_cffi_objects_that_are_not_functions_are_refused():
    ffi, lib = cffi_abi()
    with pytest.raises(TypeError, match="'double \\*', not a function pointer"):
        parpy.Kernel.from_cfunc(ffi.new("double *"))
    with pytest.raises(TypeError, match="'void \\*', not a function pointer"):
        parpy.Kernel.from_cfunc(ffi.cast("void *", lib.square_plus_one))
    with pytest.raises(ValueError, match="NULL"):
        parpy.Kernel.from_cfunc(ffi.cast("double(*)(double)", 0))
    for other in (lib, ffi, ffi.typeof("int"), len):
        with pytest.raises(TypeError, match="from_cfunc\\(\\) takes"):
            parpy.Kernel.from_cfunc(other)


def test_a_cffi_function_of_other_types_is_refused_even_with_a_signature():
    ffi = cffi.FFI()
    ffi.cdef("int abs(int); double ldexp(double, int); double cos(double);")
    libm = ffi.dlopen("libm.so.6")
    libc = ffi.dlopen(None)
    for fn, what in [(libc.abs, "int is not"), (libm.ldexp, "int is not")]:
        with pytest.raises(ValueError, match=f"cannot be a kernel: {what}"):
            parpy.Kernel.from_cfunc(fn)
        with pytest.raises(ValueError, match="cannot be a kernel"):
            parpy.Kernel.from_cfunc(fn, "int64(int64)")
    assert parpy.Kernel.from_cfunc(libm.cos)(0.0) == 1.0
    variadic = ffi.cast("double(*)(double, ...)", libm.cos)
    with pytest.raises(ValueError, match="cannot be a kernel"):
        parpy.Kernel.from_cfunc(variadic)
    no_arguments = ffi.cast("double(*)(void)", libm.cos)
    with pytest.raises(ValueError, match="takes no arguments"):
        parpy.Kernel.from_cfunc(no_arguments)


# ---- PyCapsules named by their C declaration ----------------------------------------

capsule = _clib.capsule


# A plain name of each function first; then names as Cython writes them (a const after the
# type, PY_LONG_LONG) and as a person might (with parameters' names).
CAPSULES = [
    ("square_plus_one", b"double (double)"),
    ("identity_i64", b"long (long int)"),
    ("identity_u64", b"uint64_t (uint64_t)"),
    ("add_i64", b"int64_t (int64_t, int64_t)"),
    ("mix", b"double (uint64_t, double, int64_t)"),
    ("square_plus_one", b"const double (const double x)"),
    ("identity_u64", b"unsigned PY_LONG_LONG (unsigned PY_LONG_LONG)"),
    ("identity_u64", b"uint64_t(uint64_t n)"),
    ("add_i64", b"int64_t (int64_t, int64_t const )"),
    ("add_i64", b"int64_t (int64_t a, const int64_t b)"),
    ("mix", b"double (unsigned long a, double b, long long c)"),
]
PLAIN = dict(CAPSULES[:5])


@pytest.mark.parametrize(("symbol", "name"), CAPSULES)
def test_a_capsule_named_by_its_declaration_computes_its_reference(symbol, name):
    clib_check(parpy.Kernel.from_cfunc(capsule(symbol, name), name=symbol), symbol)


def test_a_capsule_checks_a_given_signature():
    check_signature_checks(
        capsule("mix", b"double (uint64_t, double, int64_t)"),
        "float64(uint64, float64, int64)",
        "float64(float64, float64, int64)",
    )


@pytest.mark.parametrize(
    "name", [b"real (real)", b"float64_t (float64_t x)", b"double (npy_float64)", b"nonsense"]
)
def test_a_capsule_name_parpy_cannot_read_asks_for_the_signature(name):
    fn = capsule("square_plus_one", name)
    with pytest.raises(ValueError, match="give signature="):
        parpy.Kernel.from_cfunc(fn)
    # The given signature is then the caller's word, as for an address.
    kernel = parpy.Kernel.from_cfunc(fn, "float64(float64)")
    assert kernel.signature == "float64(float64)"
    assert kernel(3.0) == 10.0


def test_an_unnamed_capsule_needs_the_signature():
    fn = capsule("square_plus_one", None)
    with pytest.raises(TypeError, match="give signature="):
        parpy.Kernel.from_cfunc(fn)
    assert parpy.Kernel.from_cfunc(fn, "float64(float64)")(3.0) == 10.0


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (b"int (int)", "int is not int64"),
        (b"double (double, int __pyx_skip_dispatch)", "int __pyx_skip_dispatch is not int64"),
        (b"double *(double *)", "double \\* is not int64"),
        (b"long double (long double)", "long double is not int64"),
        (b"float (float)", "float is not int64"),
        (b"int32_t (int32_t)", "int32_t is not int64"),
        (b"struct point (double)", "struct point is not int64"),
        (b"double (double, ...)", "\\.\\.\\. is not int64"),
        (b"double (void)", "takes no arguments"),
        (b"double ()", "takes no arguments"),
        (b"double (double, double, double, double)", "takes more than 3 arguments"),
        (b"double (" + b", ".join([b"double"] * 400) + b")", "takes more than 3 arguments"),
    ],
)
def test_a_capsule_of_a_function_of_other_types_is_refused(name, match):
    fn = capsule("square_plus_one", name)
    with pytest.raises(ValueError, match=match):
        parpy.Kernel.from_cfunc(fn)
    # Its declaration is known to disagree: a given signature does not override it.
    with pytest.raises(ValueError, match=match):
        parpy.Kernel.from_cfunc(fn, "float64(float64)")


@NUMPY
@pytest.mark.parametrize("kind", ["cffi", "capsule"])
@pytest.mark.parametrize("name", ["square_plus_one", "identity_i64", "identity_u64", "mix"])
def test_parpy_map_over_numpy_arrays(kind, name):
    signature, reference = _clib.FUNCTIONS[name]
    if kind == "cffi":
        fn = getattr(cffi_abi()[1], name)
    else:
        fn = capsule(name, PLAIN[name])
    check_numpy(parpy.Kernel.from_cfunc(fn), signature, reference)


def test_a_ctypes_function_of_too_many_arguments_is_refused():
    prototype = ctypes.CFUNCTYPE(ctypes.c_double, *[ctypes.c_double] * 400)
    fn = prototype(("square_plus_one", _clib.cdll()))
    with pytest.raises(ValueError, match="takes 400 arguments"):
        parpy.Kernel.from_cfunc(fn)


# ---- Cython: cdef api functions, exported in __pyx_capi__ ------------------------------

CYTHON_SOURCE = """\
# cython: language_level=3, cdivision=True
from libc.stdint cimport int64_t, uint64_t

cdef api double square_plus_one(double x) noexcept nogil:
    return x * x + 1.0

cdef api int64_t add_i64(int64_t a, const int64_t b) noexcept nogil:
    return <int64_t>(<uint64_t>a + <uint64_t>b)

cdef api unsigned long long identity_u64(unsigned long long x) noexcept nogil:
    return x

cdef api double mix(uint64_t a, double b, int64_t c) noexcept nogil:
    return <double>(a % 1000) * b - <double>c

cdef api double no_arguments() noexcept nogil:
    return 1.0

cpdef api double dispatching(double x) noexcept nogil:
    return x
"""


@pytest.fixture(scope="module")
def cython_capi(tmp_path_factory):
    """The __pyx_capi__ of CYTHON_SOURCE, compiled by cythonize."""
    folder = tmp_path_factory.mktemp("cython")
    (folder / "_parpy_cyfuncs.pyx").write_text(CYTHON_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-q", "_parpy_cyfuncs.pyx"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=300,
        env=_clib.compiler_env(),
    )
    (path,) = folder.glob("_parpy_cyfuncs*.so")
    return load_extension("_parpy_cyfuncs", path).__pyx_capi__


@pytest.mark.parametrize("name", ["square_plus_one", "add_i64", "identity_u64", "mix"])
def test_a_cython_cdef_api_function_computes_its_reference(cython_capi, name):
    clib_check(parpy.Kernel.from_cfunc(cython_capi[name], name=name), name)


def test_a_cython_function_that_cannot_be_a_kernel_is_refused(cython_capi):
    with pytest.raises(ValueError, match="takes no arguments"):
        parpy.Kernel.from_cfunc(cython_capi["no_arguments"])
    # A cpdef function's C form takes a flag after its arguments.
    with pytest.raises(ValueError, match="int __pyx_skip_dispatch is not int64"):
        parpy.Kernel.from_cfunc(cython_capi["dispatching"])


# ---- the GIL ------------------------------------------------------------------------------
#
# This thread counts in a loop while another makes the call. A call that holds
# the GIL lets it count only in the moments around it; one that releases the
# GIL lets it count through much of the call. The share is measured against
# its own pace just before, so it does not depend on the machine's speed.

SHARE_THRESHOLD = 0.15


def observer_share_during(call):
    """(the share of ``call()``'s duration this thread counted through, its result)."""
    counter = [0]
    done = threading.Event()
    outcome: dict = {}

    def runner():
        try:
            outcome["start"], outcome["before"] = time.perf_counter(), counter[0]
            outcome["result"] = call()
            outcome["after"], outcome["end"] = counter[0], time.perf_counter()
        except BaseException as exc:  # re-raised below
            outcome["error"] = exc
        finally:
            done.set()

    def count_until(stop):
        while not stop():
            counter[0] += 1
            if counter[0] % 10_000 == 0 and time.monotonic() > deadline:
                break

    deadline = time.monotonic() + T
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        until = time.perf_counter() + 0.1
        count_until(lambda: time.perf_counter() > until)
        pace = counter[0] / 0.1
        counter[0] = 0
        thread = threading.Thread(target=runner, daemon=True)
        thread.start()
        count_until(done.is_set)
        thread.join(T)
    finally:
        sys.setswitchinterval(old)
    assert not thread.is_alive(), "the call did not finish"
    if "error" in outcome:
        raise outcome["error"]
    duration = outcome["end"] - outcome["start"]
    return (outcome["after"] - outcome["before"]) / (pace * duration), outcome["result"]


def test_the_observer_detects_a_gil_holder():
    # ctypes.PyDLL calls the same function with the GIL held through the call.
    spin = ctypes.PyDLL(str(_clib.library())).spin_ms
    spin.restype, spin.argtypes = ctypes.c_double, [ctypes.c_double]
    share, result = observer_share_during(lambda: spin(400.0))
    assert result == 8e7
    assert share < SHARE_THRESHOLD


# kind: (a maker of the spinning kernel, an item: the milliseconds of C's loop)
SPINNERS = {
    "numba": (lambda: numba_kernel("spin"), 100.0),  # Numba's loop is about 5x faster
    "cffi": (lambda: parpy.Kernel.from_cfunc(cffi_abi()[1].spin_ms), 20.0),
    "capsule": (lambda: parpy.Kernel.from_cfunc(capsule("spin_ms", b"double (double)")), 20.0),
}


@pytest.mark.parametrize("kind", [pytest.param("numba", marks=NUMPY), "cffi", "capsule"])
@pytest.mark.parametrize("workers", [1, 2])
def test_other_threads_run_while_a_batch_runs(kind, workers):
    make, ms = SPINNERS[kind]
    kernel = make()
    share, result = observer_share_during(lambda: parpy.map(kernel, [ms] * 20, workers=workers))
    assert result == [spun(ms)] * 20
    assert share > SHARE_THRESHOLD, f"another thread ran only {share:.1%} of the batch"


@pytest.mark.parametrize("kind", [pytest.param("numba", marks=NUMPY), "cffi"])
def test_other_threads_run_while_a_pool_runs_the_kernel(kind):
    make, ms = SPINNERS[kind]
    kernel = make()
    with parpy.Pool(2) as pool:
        share, result = observer_share_during(lambda: pool.map_async(kernel, [ms] * 20).get(T))
    assert result == [spun(ms)] * 20
    assert share > SHARE_THRESHOLD, f"another thread ran only {share:.1%} of the pool's map"
