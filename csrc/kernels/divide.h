/* Divide and conquer on one huge number, on the threads of a team: F(n) by
 * fast doubling with each step's squarings on separate threads, and the
 * decimal digits of an int by splitting it at shared powers of ten. Used by
 * the fib and to_decimal kernels (a single call with workers=) and by
 * parpy.lab.divide_and_conquer, which records the tasks. */
#ifndef PARPY_KERNELS_DIVIDE_H
#define PARPY_KERNELS_DIVIDE_H

#include "parpy_gmp.h"

#define PARPY_LOG2_PHI 0.69424191363061737991 /* F(n) has about n PARPY_LOG2_PHI bits */

/* F(n) is split over threads from this many bits of F(n) up (measured: below
   it the threads' hand-offs cost more than the second core gains)... */
#define PARPY_FIB_SPLIT_BITS (1u << 21)
/* ...and its doubling steps from operands of this many bits up; the steps
   before are GMP's mpz_fib2_ui on one thread. */
#define PARPY_FIB_STEP_BITS (1u << 16)
/* Ints are converted to decimal over threads from this many bits up. */
#define PARPY_DEC_SPLIT_BITS (1u << 20)

/* One task of a split computation, as parpy.lab.divide_and_conquer sees it. */
typedef struct {
    const char *what; /* "start", "square", "combine", ..., "powers", "divide", "digits" */
    int step;         /* the doubling step, or the depth in the tree */
    int thread;
    uint64_t bits; /* the size of its operand */
    int64_t start_ns, end_ns;
    int64_t deps[3]; /* indices of the tasks whose results it takes; -1: none */
} parpy_dc_event;

typedef struct {
    parpy_dc_event *events; /* cap entries; those past cap are not recorded */
    size_t cap;
    atomic_size_t len;
} parpy_dc_trace;

/* The threads a split call of F(n) uses, given workers (>= 1). */
int parpy_fib_split_threads(uint64_t n, int workers);
/* What the split computations return when an allocation failed. */
#define PARPY_DC_NOMEM (-1)

/* On every thread of a team at once (at most nthreads of them; also alone,
   outside a team): z = F(n), z initialised (n > 93). Returns the same on
   every thread: PARPY_OK, PARPY_CANCELLED or PARPY_DC_NOMEM. *state, NULL
   on entry and on return, is where thread 0 puts the state the team
   shares; trace may be NULL. */
typedef struct parpy_fib_split parpy_fib_split;
int parpy_fib_split_run(parpy_fib_split **state, mpz_ptr z, uint64_t n, int nthreads,
                        const parpy_ctx *ctx, parpy_dc_trace *trace);

/* The threads a split conversion of a bits-bit int uses, given workers. */
int parpy_dec_split_threads(uint64_t bits, int workers);
/* On every thread of a team at once, as parpy_fib_split_run: the decimal digits
   of x (sign included) into a malloc'd string *out of *len characters (NUL
   after them), owned by the caller after PARPY_OK. Returns as
   parpy_fib_split_run. */
typedef struct parpy_dec_split parpy_dec_split;
int parpy_dec_split_run(parpy_dec_split **state, mpz_srcptr x, char **out, size_t *len,
                        int nthreads, const parpy_ctx *ctx, parpy_dc_trace *trace);

#endif /* PARPY_KERNELS_DIVIDE_H */
