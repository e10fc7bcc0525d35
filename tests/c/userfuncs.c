/* Users' own C functions, for the tests of Kernel.from_cfunc and
 * Kernel.from_library: built into a shared library by tests/_clib.py. */
#include <stdint.h>

double
square_plus_one(double x)
{
    return x * x + 1.0;
}

double
identity_f64(double x)
{
    return x;
}

int64_t
identity_i64(int64_t x)
{
    return x;
}

uint64_t
identity_u64(uint64_t x)
{
    return x;
}

int64_t
add_i64(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b); /* wraps, as the reference does */
}

/* Every argument type in one signature: float64(uint64, float64, int64). */
double
mix(uint64_t a, double b, int64_t c)
{
    return (double)(a % 1000) * b - (double)c;
}

uint64_t
collatz_steps(uint64_t n)
{
    uint64_t steps = 0;
    while (n > 1) {
        n = n % 2 ? 3 * n + 1 : n / 2;
        steps++;
    }
    return steps;
}

/* About ms milliseconds of work, whose result depends on every step: for
   the tests of the GIL and of Ctrl-C. */
double
spin_ms(double ms)
{
    volatile double acc = 0.0;
    int64_t rounds = (int64_t)(ms * 200000.0);
    for (int64_t i = 0; i < rounds; i++) {
        acc = acc + 1.0;
    }
    return acc;
}

/* rounds dependent multiply-adds on x: a function whose cost is chosen by the
   caller (the benchmarks bind it to about a microsecond). */
double
spin(double x, int64_t rounds)
{
    for (int64_t i = 0; i < rounds; i++) {
        x = x * 0.999999 + 1e-6;
    }
    return x;
}

/* Functions that can fail: an int status (0: success) and the result
   through the last argument, which is left alone on failure. */

/* 1 / x; status 3 for x == 0. */
int
checked_inverse(double x, double *out)
{
    if (x == 0.0) {
        return 3;
    }
    *out = 1.0 / x;
    return 0;
}

/* a / b rounded toward zero, as C does; status -1 for b == 0, -2 when the
   quotient overflows (INT64_MIN / -1). */
int
checked_div(int64_t a, int64_t b, int64_t *out)
{
    if (b == 0) {
        return -1;
    }
    if (a == INT64_MIN && b == -1) {
        return -2;
    }
    *out = a / b;
    return 0;
}

/* Every argument type: a * c + (uint64_t)b, wrapping; status 7 for b < 0
   or NaN. */
int
checked_mix(uint64_t a, double b, int64_t c, uint64_t *out)
{
    if (!(b >= 0.0)) {
        return 7;
    }
    *out = a * (uint64_t)c + (uint64_t)(b < 1e18 ? b : 1e18);
    return 0;
}
