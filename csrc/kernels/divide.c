/* Divide and conquer on one huge number, on the threads of a team.
 *
 * F(n): GMP's fast doubling (mpz_fib2_ui's recurrence) walks the bits of n
 * from the top, from (F(k), F(k-1)) to (F(2k+b), F(2k+b-1)):
 *     F(2k+1) = 4 F(k)^2 - F(k-1)^2 + 2(-1)^k,   F(2k-1) = F(k)^2 + F(k-1)^2,
 *     F(2k) = F(2k+1) - F(2k-1).
 * The two squarings of a step are independent: one thread each. With six
 * threads or more each squaring is itself split, as Karatsuba does, into
 * three of half the size (x = h 2^s + l: x^2 = h^2 2^2s + ((h+l)^2 - h^2 -
 * l^2) 2^s + l^2), six independent squarings a step. The small start, below
 * PARPY_FIB_STEP_BITS, is GMP's own mpz_fib2_ui on one thread.
 *
 * Decimal digits: x = q 10^w + r with r < 10^w; q and r convert
 * independently and r is padded to w digits. The widths are c 2^i digits,
 * so every split of one depth divides by the same power 10^(c 2^i), computed
 * once (by squaring) and shared. The top depths are split by all threads
 * together; then each thread takes whole subtrees, down to c digits, where
 * GMP's mpz_get_str converts.
 *
 * Every thread runs the same loop and meets the others at team barriers; a
 * decision to stop (an allocation failed, or the call was cancelled) is
 * taken by thread 0 between two barriers, so that all threads leave
 * together. GMP calls run under the thread's parpy_gmp_recover. */
#include "kernels/divide.h"

#include "engine/teams.h"
#include "runtime/clock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KARATSUBA_THREADS 6          /* from this many threads, squarings are split */
#define LEAF_DIGITS       (1u << 15) /* mpz_get_str converts subtrees of at most this */
#define MAX_DEPTH         40

/* ---- the trace ----------------------------------------------------------- */

static int64_t
record(parpy_dc_trace *trace, const char *what, int step, uint64_t bits, int64_t start, int64_t d0,
       int64_t d1, int64_t d2)
{
    if (trace == NULL) {
        return -1;
    }
    size_t i = atomic_fetch_add(&trace->len, 1);
    if (i >= trace->cap) {
        return -1;
    }
    parpy_dc_event *e = &trace->events[i];
    *e = (parpy_dc_event){what,  step,           parpy_team_thread(), bits,
                          start, parpy_now_ns(), {d0, d1, d2}};
    return (int64_t)i;
}

static int64_t
now_if(const parpy_dc_trace *trace)
{
    return trace != NULL ? parpy_now_ns() : 0;
}

/* ---- F(n) ------------------------------------------------------------------ */

struct parpy_fib_split {
    mpz_t f, g;         /* F(k), F(k-1) */
    mpz_t sq[2];        /* f^2, g^2 */
    mpz_t part[2][3];   /* Karatsuba: high half, low half, their sum; of f and g */
    mpz_t psq[2][3];    /* their squares */
    mp_bitcnt_t cut[2]; /* where f and g were split */
    atomic_int fail;    /* an allocation failed */
    int stop;           /* thread 0's decision, read after a barrier */
    int64_t ev_f, ev_g, ev_sq[2], ev_part[2], ev_psq[2][3];
};

int
parpy_fib_split_threads(uint64_t n, int workers)
{
    if (workers < 2 || (double)n * PARPY_LOG2_PHI < PARPY_FIB_SPLIT_BITS) {
        return 1;
    }
    return workers >= KARATSUBA_THREADS ? KARATSUBA_THREADS : 2;
}

/* Runs fn(arg), GMP calls, under this thread's recovery point, unless an
   allocation failed already; a failed allocation sets fail. (A function of
   its own, so that no caller's variable lives across the setjmp.) */
static __attribute__((noinline)) void
gmp_task(atomic_int *fail, void (*fn)(void *), void *arg)
{
    jmp_buf recover;
    if (setjmp(recover)) {
        atomic_store(fail, 1);
        return;
    }
    if (!atomic_load_explicit(fail, memory_order_relaxed)) {
        parpy_gmp_recover = &recover;
        fn(arg);
        parpy_gmp_recover = NULL;
    }
}

/* Gives z room for limbs limbs (its value kept), by realloc. GMP's
   functions that find their destination too small free it and then
   allocate anew: were that allocation to fail (longjmp), the destination
   would be left pointing at freed memory. With room made first, they never
   allocate it, and a failed realloc leaves z as it was. */
static void
room(mpz_ptr z, size_t limbs)
{
    if ((size_t)z->_mp_alloc < limbs) {
        mpz_realloc2(z, (mp_bitcnt_t)limbs * GMP_NUMB_BITS);
    }
}

/* The tasks' bodies. */
typedef struct {
    mpz_ptr d[3];
    mpz_srcptr x[3];
    mp_bitcnt_t cut;
    unsigned long mul[2];
    int sign; /* of the 2 added */
} op_args;

static void
op_square(void *p)
{
    op_args *a = p;
    room(a->d[0], 2 * mpz_size(a->x[0]) + 1);
    mpz_mul(a->d[0], a->x[0], a->x[0]);
}

static void
op_halves(void *p) /* d = high half, low half, their sum of x at cut */
{
    op_args *a = p;
    for (int i = 0; i < 3; i++) {
        room(a->d[i], mpz_size(a->x[0]) + 1);
    }
    mpz_tdiv_q_2exp(a->d[0], a->x[0], a->cut);
    mpz_tdiv_r_2exp(a->d[1], a->x[0], a->cut);
    mpz_add(a->d[2], a->d[0], a->d[1]);
}

static void
op_join(void *p) /* d0 = h^2 2^2s + ((h+l)^2 - h^2 - l^2) 2^s + l^2; d1, d2 the squares */
{
    op_args *a = p;
    mpz_ptr hh = a->d[1], ll = a->d[2], ss = (mpz_ptr)a->x[0];
    room(a->d[0], mpz_size(hh) + 2 * (a->cut / GMP_NUMB_BITS) + 3);
    mpz_sub(ss, ss, hh);
    mpz_sub(ss, ss, ll);
    mpz_mul_2exp(a->d[0], hh, a->cut);
    mpz_add(a->d[0], a->d[0], ss);
    mpz_mul_2exp(a->d[0], a->d[0], a->cut);
    mpz_add(a->d[0], a->d[0], ll);
}

static void
op_combine(void *p) /* d = mul0 x0 - mul1 x1 + 2 sign, or x0 + x1 when mul0 is 0 */
{
    op_args *a = p;
    room(a->d[0], mpz_size(a->x[0]) + 2);
    if (a->mul[0] == 0) {
        mpz_add(a->d[0], a->x[0], a->x[1]);
        return;
    }
    mpz_mul_ui(a->d[0], a->x[0], a->mul[0]);
    mpz_submul_ui(a->d[0], a->x[1], a->mul[1]);
    if (a->sign > 0) {
        mpz_add_ui(a->d[0], a->d[0], 2);
    }
    else {
        mpz_sub_ui(a->d[0], a->d[0], 2);
    }
}

static void
op_fib2(void *p) /* d0, d1 = F(k), F(k-1) */
{
    op_args *a = p;
    mpz_fib2_ui(a->d[0], a->d[1], a->mul[0]);
}

static void
fib_clear(parpy_fib_split *s)
{
    mpz_clear(s->f);
    mpz_clear(s->g);
    for (int i = 0; i < 2; i++) {
        mpz_clear(s->sq[i]);
        for (int j = 0; j < 3; j++) {
            mpz_clear(s->part[i][j]);
            mpz_clear(s->psq[i][j]);
        }
    }
}

/* The squarings of one step: sq[i] = (f, g)[i]^2, split or not. */
static void
fib_squares(parpy_fib_split *s, int t, int nthreads, int step, parpy_dc_trace *trace)
{
    mpz_ptr x[2] = {s->f, s->g};
    int64_t ev_x[2] = {s->ev_f, s->ev_g};
    if (nthreads < KARATSUBA_THREADS) {
        for (int i = t; i < 2; i += nthreads) {
            int64_t t0 = now_if(trace);
            op_args a = {.d = {s->sq[i]}, .x = {x[i]}};
            gmp_task(&s->fail, op_square, &a);
            s->ev_sq[i] =
                record(trace, "square", step, mpz_sizeinbase(x[i], 2), t0, ev_x[i], -1, -1);
        }
        return;
    }
    for (int i = t; i < 2; i += nthreads) {
        int64_t t0 = now_if(trace);
        s->cut[i] = mpz_sizeinbase(x[i], 2) / 2;
        op_args a = {
            .d = {s->part[i][0], s->part[i][1], s->part[i][2]}, .x = {x[i]}, .cut = s->cut[i]};
        gmp_task(&s->fail, op_halves, &a);
        s->ev_part[i] = record(trace, "split", step, mpz_sizeinbase(x[i], 2), t0, ev_x[i], -1, -1);
    }
    parpy_team_barrier();
    for (int task = t; task < 6; task += nthreads) {
        int i = task / 3, j = task % 3;
        int64_t t0 = now_if(trace);
        op_args a = {.d = {s->psq[i][j]}, .x = {s->part[i][j]}};
        gmp_task(&s->fail, op_square, &a);
        s->ev_psq[i][j] = record(trace, "square", step, mpz_sizeinbase(s->part[i][j], 2), t0,
                                 s->ev_part[i], -1, -1);
    }
    parpy_team_barrier();
    for (int i = t; i < 2; i += nthreads) {
        int64_t t0 = now_if(trace);
        op_args a = {
            .d = {s->sq[i], s->psq[i][0], s->psq[i][1]}, .x = {s->psq[i][2]}, .cut = s->cut[i]};
        gmp_task(&s->fail, op_join, &a);
        s->ev_sq[i] = record(trace, "join", step, mpz_sizeinbase(x[i], 2), t0, s->ev_psq[i][0],
                             s->ev_psq[i][1], s->ev_psq[i][2]);
    }
}

int
parpy_fib_split_run(parpy_fib_split **state, mpz_ptr z, uint64_t n, int nthreads,
                    const parpy_ctx *ctx, parpy_dc_trace *trace)
{
    int t = parpy_team_thread();
    nthreads = nthreads < parpy_team_size() ? nthreads : parpy_team_size();
    /* The start: (F(k), F(k-1)) for the top bits of n, below the split size. */
    int top = 63 - __builtin_clzll(n);
    int steps = 0;
    while (steps < top && (double)(n >> (steps + 1)) * PARPY_LOG2_PHI >= PARPY_FIB_STEP_BITS) {
        steps++;
    }
    if (t == 0 && (*state = calloc(1, sizeof(parpy_fib_split))) != NULL) {
        parpy_fib_split *s = *state;
        mpz_init(s->f);
        mpz_init(s->g);
        for (int i = 0; i < 2; i++) {
            mpz_init(s->sq[i]);
            for (int j = 0; j < 3; j++) {
                mpz_init(s->part[i][j]);
                mpz_init(s->psq[i][j]);
            }
        }
        atomic_init(&s->fail, 0);
        s->stop = 0;
        int64_t t0 = now_if(trace);
        op_args a = {.d = {s->f, s->g}, .mul = {(unsigned long)(n >> steps)}};
        gmp_task(&s->fail, op_fib2, &a);
        s->ev_f = s->ev_g = record(trace, "start", 0, mpz_sizeinbase(s->f, 2), t0, -1, -1, -1);
    }
    parpy_team_barrier();
    parpy_fib_split *s = *state;
    if (s == NULL) {
        return PARPY_DC_NOMEM; /* on every thread */
    }
    uint64_t k = n >> steps;
    for (int bit = steps - 1; bit >= 0 && !s->stop; bit--) {
        int step = steps - bit;
        fib_squares(s, t, nthreads, step, trace);
        parpy_team_barrier();
        /* a = F(k)^2, b = F(k-1)^2, e = 2(-1)^k:
           F(2k+1) = 4a - b + e, F(2k) = 3a - 2b + e, F(2k-1) = a + b. */
        int b = (n >> bit) & 1;
        int last = bit == 0;
        int e = (k & 1) ? -1 : 1;
        int64_t t0 = now_if(trace);
        if (t == 0) { /* the new F(k): F(2k+1) or F(2k) */
            op_args a = {
                .d = {s->f}, .x = {s->sq[0], s->sq[1]}, .mul = {b ? 4 : 3, b ? 1 : 2}, .sign = e};
            gmp_task(&s->fail, op_combine, &a);
            s->ev_f = record(trace, "combine", step, mpz_sizeinbase(s->sq[0], 2), t0, s->ev_sq[0],
                             s->ev_sq[1], -1);
        }
        if (t == 1 % nthreads && !last) { /* the new F(k-1): F(2k) or F(2k-1) */
            op_args a = {.d = {s->g}, .x = {s->sq[0], s->sq[1]}, .mul = {b ? 3 : 0, 2}, .sign = e};
            gmp_task(&s->fail, op_combine, &a);
            s->ev_g = record(trace, "combine", step, mpz_sizeinbase(s->sq[0], 2), t0, s->ev_sq[0],
                             s->ev_sq[1], -1);
        }
        k = 2 * k + (uint64_t)b;
        if (t == 0) { /* read at the top, after the barrier; a failure on
                         another thread now stops the loop a step later (its
                         tasks are skipped meanwhile) */
            s->stop = parpy_cancelled(ctx) || atomic_load(&s->fail);
        }
        parpy_team_barrier();
    }
    parpy_team_barrier(); /* every failure is seen */
    int code = atomic_load(&s->fail) ? PARPY_DC_NOMEM : s->stop ? PARPY_CANCELLED : PARPY_OK;
    parpy_team_barrier(); /* every thread has read the outcome */
    if (t == 0) {
        if (code == PARPY_OK) {
            mpz_swap(z, s->f);
        }
        fib_clear(s);
        free(s);
        *state = NULL;
    }
    return code;
}

/* ---- decimal digits --------------------------------------------------------- */

typedef struct {
    mpz_t v;
    size_t at;  /* where its digits go in the buffer */
    int64_t ev; /* the task that made it */
} dec_node;

struct parpy_dec_split {
    mpz_t pw[MAX_DEPTH]; /* pw[i] = 10^(c 2^i) */
    int levels;          /* the root is c 2^levels digits wide */
    size_t c;            /* digits of a leaf */
    char *buf;           /* the root's digits, zero-padded */
    dec_node *nodes[2];  /* the current depth's nodes, and the next's */
    size_t count;        /* nodes at the current depth */
    atomic_size_t next;  /* the next node to take */
    atomic_int fail;
    int stop;
    int64_t ev_powers, ev_top;
};

int
parpy_dec_split_threads(uint64_t bits, int workers)
{
    return workers < 2 || bits < PARPY_DEC_SPLIT_BITS ? 1 : workers;
}

/* One thread's temporaries for a subtree: q and r at each level. */
typedef struct {
    mpz_t q[MAX_DEPTH], r[MAX_DEPTH];
    char *leaf; /* c + 2 bytes */
} dec_scratch;

/* The digits of v (< 10^(c 2^level)) into buf[at..), zero-padded. GMP
   allocations under the caller's recovery point. */
static void
dec_convert(parpy_dec_split *s, dec_scratch *w, mpz_srcptr v, int level, size_t at, int depth,
            int64_t ev, const parpy_ctx *ctx, parpy_dc_trace *trace)
{
    if (parpy_cancelled(ctx)) {
        return;
    }
    if (level == 0) {
        int64_t t0 = now_if(trace);
        mpz_get_str(w->leaf, 10, v);
        size_t len = strlen(w->leaf);
        memset(s->buf + at, '0', s->c - len);
        memcpy(s->buf + at + s->c - len, w->leaf, len);
        record(trace, "digits", depth, mpz_sizeinbase(v, 2), t0, ev, -1, -1);
        return;
    }
    int64_t t0 = now_if(trace);
    room(w->q[level], mpz_size(v) + 1);
    room(w->r[level], mpz_size(s->pw[level - 1]) + 1);
    mpz_tdiv_qr(w->q[level], w->r[level], v, s->pw[level - 1]);
    int64_t me = record(trace, "divide", depth, mpz_sizeinbase(v, 2), t0, ev, -1, -1);
    size_t half = s->c << (level - 1);
    dec_convert(s, w, w->q[level], level - 1, at, depth + 1, me, ctx, trace);
    dec_convert(s, w, w->r[level], level - 1, at + half, depth + 1, me, ctx, trace);
}

typedef struct {
    parpy_dec_split *s;
    dec_scratch *w;
    int level, depth;
    const parpy_ctx *ctx;
    parpy_dc_trace *trace;
} subtrees_args;

static void
op_subtrees(void *p) /* takes subtrees until none is left */
{
    subtrees_args *a = p;
    size_t i;
    while ((i = atomic_fetch_add(&a->s->next, 1)) < a->s->count) {
        dec_node *node = &a->s->nodes[0][i];
        dec_convert(a->s, a->w, node->v, a->level, node->at, a->depth, node->ev, a->ctx, a->trace);
    }
}

typedef struct {
    parpy_dec_split *s;
    mpz_srcptr x;
} powers_args;

static void
op_powers(void *p) /* the shared powers but the top one, and the root */
{
    powers_args *a = p;
    parpy_dec_split *s = a->s;
    if (s->levels > 1) {
        mpz_ui_pow_ui(s->pw[0], 10, s->c);
    }
    for (int i = 1; i + 1 < s->levels; i++) {
        mpz_mul(s->pw[i], s->pw[i - 1], s->pw[i - 1]);
    }
    mpz_abs(s->nodes[0][0].v, a->x);
}

static void
op_top_power(void *p) /* the top power, by itself */
{
    parpy_dec_split *s = p;
    int top = s->levels - 1;
    mpz_ui_pow_ui(s->pw[top], 10, s->c << top);
}

static void
op_divide(void *p) /* d0, d1 = x0 // x1, x0 % x1 */
{
    op_args *a = p;
    room(a->d[0], mpz_size(a->x[0]) + 1);
    room(a->d[1], mpz_size(a->x[1]) + 1);
    mpz_tdiv_qr(a->d[0], a->d[1], a->x[0], a->x[1]);
}

/* This thread's share of the subtrees left at the current depth. */
static void
dec_subtrees(parpy_dec_split *s, int level, int depth, const parpy_ctx *ctx, parpy_dc_trace *trace)
{
    dec_scratch *w = malloc(sizeof(dec_scratch));
    char *leaf = malloc(s->c + 2);
    if (w == NULL || leaf == NULL) {
        free(w);
        free(leaf);
        atomic_store(&s->fail, 1);
        return;
    }
    w->leaf = leaf;
    for (int i = 0; i <= level; i++) {
        mpz_init(w->q[i]);
        mpz_init(w->r[i]);
    }
    subtrees_args a = {s, w, level, depth, ctx, trace};
    gmp_task(&s->fail, op_subtrees, &a);
    for (int i = 0; i <= level; i++) {
        mpz_clear(w->q[i]);
        mpz_clear(w->r[i]);
    }
    free(leaf);
    free(w);
}

static void
dec_clear(parpy_dec_split *s, size_t capacity)
{
    for (int i = 0; i < MAX_DEPTH; i++) {
        mpz_clear(s->pw[i]);
    }
    for (int d = 0; d < 2; d++) {
        if (s->nodes[d] != NULL) {
            for (size_t i = 0; i < capacity; i++) {
                mpz_clear(s->nodes[d][i].v);
            }
            free(s->nodes[d]);
        }
    }
    free(s->buf);
}

int
parpy_dec_split_run(parpy_dec_split **state, mpz_srcptr x, char **out, size_t *len, int nthreads,
                    const parpy_ctx *ctx, parpy_dc_trace *trace)
{
    int t = parpy_team_thread();
    nthreads = nthreads < parpy_team_size() ? nthreads : parpy_team_size();
    /* The plan: the fewest levels whose leaves are at most LEAF_DIGITS wide;
       the top depths are split together until there are nodes enough. */
    size_t digits = mpz_sizeinbase(x, 10);
    int levels = 0;
    while ((digits + ((size_t)1 << levels) - 1) >> levels > LEAF_DIGITS && levels < MAX_DEPTH - 1) {
        levels++;
    }
    int shared = 0; /* depths split by all threads together */
    while (shared < levels && ((size_t)1 << shared) < (size_t)nthreads) {
        shared++;
    }
    if ((nthreads & (nthreads - 1)) != 0 && shared + 2 <= levels) {
        shared += 2; /* more subtrees than threads, to even out the shares */
    }
    size_t capacity = (size_t)1 << shared;
    if (t == 0 && (*state = calloc(1, sizeof(parpy_dec_split))) != NULL) {
        parpy_dec_split *s = *state;
        for (int i = 0; i < MAX_DEPTH; i++) {
            mpz_init(s->pw[i]);
        }
        atomic_init(&s->fail, 0);
        atomic_init(&s->next, 0);
        s->stop = 0;
        s->levels = levels;
        s->c = (digits + ((size_t)1 << levels) - 1) >> levels;
        s->buf = malloc((s->c << levels) + 2);
        for (int d = 0; d < 2; d++) {
            s->nodes[d] = malloc(capacity * sizeof(dec_node));
            if (s->nodes[d] != NULL) {
                for (size_t i = 0; i < capacity; i++) {
                    mpz_init(s->nodes[d][i].v);
                }
            }
        }
        if (s->buf == NULL || s->nodes[0] == NULL || s->nodes[1] == NULL) {
            atomic_store(&s->fail, 1);
        }
    }
    parpy_team_barrier(); /* what thread 0 set up */
    parpy_dec_split *s = *state;
    if (s == NULL) {
        return PARPY_DC_NOMEM; /* on every thread */
    }
    if (t == 0 && !atomic_load(&s->fail)) { /* the powers below the top one, while... */
        int64_t t0 = now_if(trace);
        powers_args a = {s, x};
        gmp_task(&s->fail, op_powers, &a);
        s->ev_powers =
            record(trace, "powers", 0, levels > 1 ? mpz_sizeinbase(s->pw[levels - 2], 2) : 0, t0,
                   -1, -1, -1);
    }
    if (t == 1 % nthreads && levels > 0 && !atomic_load(&s->fail)) { /* ...the top one */
        int64_t t0 = now_if(trace);
        gmp_task(&s->fail, op_top_power, s);
        s->ev_top =
            record(trace, "powers", 0, mpz_sizeinbase(s->pw[levels - 1], 2), t0, -1, -1, -1);
    }
    parpy_team_barrier();
    if (t == 0) {
        s->stop = atomic_load(&s->fail);
        if (!s->stop) {
            s->nodes[0][0].at = 0;
            s->nodes[0][0].ev = s->ev_powers;
            s->count = 1;
        }
    }
    parpy_team_barrier();
    int depth = 0;
    for (; depth < shared && !s->stop; depth++) {
        int level = levels - depth;
        size_t half = s->c << (level - 1);
        for (size_t i = (size_t)t; i < s->count; i += (size_t)nthreads) {
            dec_node *node = &s->nodes[0][i];
            dec_node *hi = &s->nodes[1][2 * i], *lo = &s->nodes[1][2 * i + 1];
            int64_t t0 = now_if(trace);
            op_args a = {.d = {hi->v, lo->v}, .x = {node->v, s->pw[level - 1]}};
            gmp_task(&s->fail, op_divide, &a);
            hi->at = node->at;
            lo->at = node->at + half;
            hi->ev = lo->ev = record(trace, "divide", depth, mpz_sizeinbase(node->v, 2), t0,
                                     node->ev, s->ev_top, -1);
        }
        parpy_team_barrier();
        if (t == 0) {
            dec_node *swap = s->nodes[0];
            s->nodes[0] = s->nodes[1];
            s->nodes[1] = swap;
            s->count *= 2;
            s->stop = parpy_cancelled(ctx) || atomic_load(&s->fail);
        }
        parpy_team_barrier();
    }
    if (!s->stop) {
        dec_subtrees(s, levels - depth, depth, ctx, trace);
    }
    parpy_team_barrier();
    int code = atomic_load(&s->fail)  ? PARPY_DC_NOMEM
               : parpy_cancelled(ctx) ? PARPY_CANCELLED
                                      : PARPY_OK;
    parpy_team_barrier(); /* every thread has read the outcome */
    if (t == 0) {
        if (code == PARPY_OK) {
            size_t width = s->c << levels, skip = 0;
            while (skip + 1 < width && s->buf[skip] == '0') {
                skip++;
            }
            int negative = mpz_sgn(x) < 0;
            char *text = malloc(width - skip + 2);
            if (text == NULL) {
                code = PARPY_DC_NOMEM;
            }
            else {
                text[0] = '-';
                memcpy(text + negative, s->buf + skip, width - skip);
                text[negative + width - skip] = '\0';
                *out = text;
                *len = (size_t)negative + width - skip;
            }
        }
        dec_clear(s, capacity);
        free(s);
        *state = NULL;
    }
    return code;
}
