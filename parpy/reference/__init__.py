"""Pure-Python twins of parpy's native kernels.

Written as a Python programmer would write them. They are the oracle the
tests compare against and the work that the comparisons run on threading
and multiprocessing. Each validates its arguments as its native twin does
(type, sign, the 64-bit range), so both raise the same exceptions; the
native kernels' size limits (OverflowError/MemoryError for results that
cannot fit) are their own.
"""

from __future__ import annotations

import operator
from typing import Any, SupportsIndex

from parpy.reference.links import extract_links

__all__ = ["fib", "fib_iterative", "fib_recursive", "fib_mod", "to_decimal", "extract_links"]

U64 = 1 << 64


def __getattr__(name: str) -> Any:
    """parpy.reference.crawl: the classic crawler, the twin of parpy.crawl. It
    lives with the crawler (:mod:`parpy.crawler.classic`), a layer above."""
    if name == "crawl":
        from parpy.crawler.classic import crawl

        return crawl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FIB_U64_MAX_N = 93  # F(93) is the largest Fibonacci number below 2**64


def _check(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    if value >= U64:
        raise OverflowError(f"{name} must be < 2**64, not {value}")
    return value


def fib(n: int) -> int:
    """Return F(n) by fast doubling.

    F(2k) = F(k)(2F(k+1) - F(k)), F(2k+1) = F(k)^2 + F(k+1)^2: the twin of
    :data:`parpy.fib`.

    Parameters
    ----------
    n : int
        The index, 0 <= n < 2**64.

    Returns
    -------
    int
        The n-th Fibonacci number (F(0) = 0, F(1) = 1).

    Raises
    ------
    TypeError
        If n is not an int (bool included).
    ValueError
        If n < 0.
    OverflowError
        If n >= 2**64.
    """
    n = _check(n, "n")
    a, b = 0, 1  # F(k), F(k+1) for k = the bits of n read so far
    for bit in bin(n)[2:]:
        a, b = a * (2 * b - a), a * a + b * b
        if bit == "1":
            a, b = b, a + b
    return a


def fib_iterative(n: int) -> int:
    """Return F(n) by the book's loop: the twin of :data:`parpy.fib_iterative`.

    Parameters
    ----------
    n : int
        The index, 0 <= n < 2**64.

    Returns
    -------
    int
        The n-th Fibonacci number.

    Raises
    ------
    TypeError
        If n is not an int (bool included).
    ValueError
        If n < 0.
    OverflowError
        If n >= 2**64.
    """
    n = _check(n, "n")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def fib_recursive(n: int) -> int:
    """Return F(n) by naive recursion: exponential time, the classic CPU-bound demo.

    The twin of :data:`parpy.fib_recursive`, on 64-bit values.

    Parameters
    ----------
    n : int
        The index, 0 <= n <= 93 (F(93) is the largest below 2**64).

    Returns
    -------
    int
        The n-th Fibonacci number.

    Raises
    ------
    TypeError
        If n is not an int (bool included).
    ValueError
        If n < 0.
    OverflowError
        If n > 93.
    """
    n = _check(n, "n")
    if n > FIB_U64_MAX_N:
        raise OverflowError(
            f"fib_recursive computes on 64-bit integers: n must be <= {FIB_U64_MAX_N}, not {n}"
        )
    return _recurse(n)


def _recurse(n: int) -> int:
    if n < 2:
        return n
    return _recurse(n - 1) + _recurse(n - 2)


def fib_mod(n: int, m: int) -> int:
    """Return F(n) mod m by fast doubling modulo m: the twin of :data:`parpy.fib_mod`.

    Parameters
    ----------
    n : int
        The index, 0 <= n < 2**64.
    m : int
        The modulus, 1 <= m < 2**64.

    Returns
    -------
    int
        F(n) mod m.

    Raises
    ------
    TypeError
        If n or m is not an int (bool included).
    ValueError
        If n < 0, or m < 1.
    OverflowError
        If n or m >= 2**64.
    """
    n = _check(n, "n")
    m = _check(m, "m")
    if m == 0:
        raise ValueError("m must be >= 1, not 0")
    a, b = 0, 1 % m
    for bit in bin(n)[2:]:
        a, b = a * (2 * b - a) % m, (a * a + b * b) % m
        if bit == "1":
            a, b = b, (a + b) % m
    return a


def to_decimal(x: int) -> str:
    """Return the decimal digits of an int: str(x), without the int_max_str_digits limit.

    The twin of :data:`parpy.to_decimal`.

    Parameters
    ----------
    x : int
        Any int; a negative one gives a leading "-".

    Returns
    -------
    str
        Its decimal digits.

    Raises
    ------
    TypeError
        If x is not an int (bool included).
    """
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"x must be an int, not {type(x).__name__}")
    x = int(x)  # an int subclass may format itself otherwise
    if x < 0:
        return "-" + to_decimal(-x)
    if x < 10**_CHUNK_DIGITS:
        return int.__repr__(x)
    # Divide and conquer by a power of ten near half the digits.
    k = (x.bit_length() * 30103 // 100000 + 1) // 2  # about half the digits
    high, low = divmod(x, 10**k)
    return to_decimal(high) + to_decimal(low).rjust(k, "0")


_CHUNK_DIGITS = 1000  # below the str() limit of every Python
