"""kernel.bind(*args): a kernel of one argument with its trailing arguments
fixed, validated at bind time, native in every executor, picklable."""

from __future__ import annotations

import inspect
import pickle

import pytest
from _util import INPUT_ERRORS

import parpy
from parpy import reference

T = 60
M = 10**9 + 7
NS = list(range(0, 300, 7)) + [2**64 - 1, 10**18]


def mod_expected(ns, m=M):
    return [reference.fib_mod(n, m) for n in ns]


def test_a_bound_kernel_is_the_call_with_its_arguments():
    bound = parpy.fib_mod.bind(M)
    assert [bound(n) for n in NS] == mod_expected(NS)
    assert isinstance(bound, parpy.Kernel)
    assert bound.bound == (M,) and parpy.fib_mod.bound is None
    assert (bound.min_args, bound.max_args) == (1, 1)
    assert repr(bound) == f"<parpy kernel fib_mod.bind({M})>"
    assert str(inspect.signature(bound)) == "(n, /)"
    assert bound.__name__ == "fib_mod"


def test_bound_extract_links():
    page = b'<base href="/b/"><a href="x">1</a><a href=\'y z\'>'
    for args in [("http://h/a/",), (None, "regex"), ("http://h/", "html"), ()]:
        bound = parpy.extract_links.bind(*args)
        assert (
            bound(page) == reference.extract_links(page, *args) == parpy.extract_links(page, *args)
        )
    assert repr(parpy.extract_links.bind(None, "regex")) == (
        "<parpy kernel extract_links.bind(None, 'regex')>"
    )


@pytest.mark.parametrize(
    ("kernel", "args", "exc", "match"),
    [
        (parpy.fib_mod, (0,), ValueError, "m must be >= 1, not 0"),
        (parpy.fib_mod, (-1,), ValueError, "m must be >= 0"),
        (parpy.fib_mod, ("7",), TypeError, "m must be an int"),
        (parpy.fib_mod, (2**64,), OverflowError, "m must be < 2"),
        (parpy.fib_mod, (), TypeError, "bind"),
        (parpy.fib_mod, (1, 2), TypeError, "bind"),
        (parpy.fib, (1,), TypeError, "bind"),
        (parpy.extract_links, (5,), TypeError, "base_url must be str or None"),
        (parpy.extract_links, (None, "xml"), ValueError, "mode must be 'html' or 'regex'"),
        (parpy.extract_links, (None, "html", 1), TypeError, "bind"),
    ],
)
def test_arguments_are_validated_at_bind_time(kernel, args, exc, match):
    with pytest.raises(exc, match=match):
        kernel.bind(*args)


def test_a_bound_kernel_takes_one_argument_and_binds_once():
    bound = parpy.fib_mod.bind(M)
    with pytest.raises(TypeError, match="exactly 1"):
        bound(1, 2)
    with pytest.raises(TypeError):
        bound()
    with pytest.raises(TypeError, match="exactly 1"):
        bound(n=1)
    with pytest.raises(TypeError, match="bound already"):
        bound.bind(3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        bound(-1)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_bound_kernel_pickles(protocol):
    for bound in (parpy.fib_mod.bind(97), parpy.extract_links.bind("http://h/", "regex")):
        copy = pickle.loads(pickle.dumps(bound, protocol))
        assert repr(copy) == repr(bound) and copy.bound == bound.bound
    assert pickle.loads(pickle.dumps(parpy.fib_mod.bind(97)))(10**6) == reference.fib_mod(10**6, 97)


def test_a_bound_kernel_is_native_in_every_executor():
    bound = parpy.fib_mod.bind(M)
    want = mod_expected(NS)
    assert parpy.map(bound, NS, workers=2) == want
    assert parpy.map(bound, NS, workers=2, schedule="static", chunksize=3) == want
    with parpy.Pool(2) as pool:
        assert pool.map(bound, NS) == want
        assert pool.map_async(bound, NS).get(T) == want
        assert list(pool.imap(bound, NS)) == want
        assert sorted(pool.imap_unordered(bound, NS)) == sorted(want)
        assert pool.apply(bound, (NS[5],)) == want[5]
    with parpy.ThreadPoolExecutor(2) as executor:
        assert [executor.submit(bound, n).result(T) for n in NS] == want
        assert list(executor.map(bound, NS, timeout=T)) == want
        assert list(executor.map(bound, NS, chunksize=4, timeout=T)) == want


def test_a_bound_kernels_bad_item_names_its_position():
    bound = parpy.fib_mod.bind(M)
    with pytest.raises(ValueError) as info:
        parpy.map(bound, [1, 2, -3])
    assert info.value.__notes__ == ["parpy.fib_mod: items[2]"]
    with parpy.Pool(2) as pool:
        for bad in ("x", 1.5, None, True):
            with pytest.raises(INPUT_ERRORS):
                pool.map(bound, [1, bad])
        assert pool.map(bound, [10]) == [55]


def test_a_bound_kernel_feeds_the_next_kernel_as_a_c_value():
    bound = parpy.fib_mod.bind(M)
    assert parpy._core.chain((bound, parpy.to_decimal), (10**6,)) == str(bound(10**6))
    # fib_mod takes an mpz as n, its modulus from the binding
    assert parpy._core.chain((bound, bound), (10**6,)) == bound(bound(10**6))
    assert parpy._core.chain((parpy.fib, bound), (90,)) == bound(parpy.fib(90))
    with pytest.raises(OverflowError, match="n must be < 2"):
        parpy._core.chain((parpy.fib, bound), (94 * 2,))
    with pytest.raises(TypeError, match="cannot take the output of fib"):
        parpy._core.chain((parpy.fib, parpy.fib_mod), (5,))  # no modulus
