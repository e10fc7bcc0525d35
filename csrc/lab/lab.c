/* The native half of parpy.lab: race conditions, deadlock, starvation, and
 * shared state against message passing, happening on native threads.
 *
 * Four module functions, _lab_race, _lab_deadlock, _lab_starvation and
 * _lab_reduce; parpy/lab.py validates their arguments, calls them and builds
 * the reports. Each runs one experiment on a team of pthreads that never
 * touch the Python API: the calling thread releases the GIL and waits for
 * the team in slices, re-taking the GIL between slices to run signal
 * handlers; on Ctrl-C it tells the team to stop (an atomic flag every loop
 * reads), joins every thread and raises. Every loop is bounded by the
 * arguments (increments, rounds, seconds, items), and so is the memory.
 *
 * What the threads race on is an atomic, or plain data under a lock: the
 * lost updates of "unsynchronized" come from a relaxed load followed by a
 * relaxed store, a real race of the algorithm that is defined behaviour, so
 * ASan, UBSan and TSan have nothing to report. Where the deadlock lab takes
 * its locks in opposite orders, every lock taken while holding the other is
 * taken by trylock (in a loop, for a wait the watchdog can break), which
 * TSan's lock-order checker does not count as a potential deadlock: the
 * deadlock happens, and the sanitizers see a program that recovers from it.
 */
#include "lab/lab.h"

#include "runtime/clock.h"
#include "runtime/ring.h"
#include "runtime/wait.h"

#include <errno.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LAB_MAX_THREADS 256     /* parpy.lab.MAX_THREADS */
#define STOP_EVERY      4096    /* loop iterations between looks at the stop flag */
#define SPINS           100     /* a waiting thread's spins between sleeps or yields */
#define POLL_NS         50000   /* a polling lock wait's sleep between tries */
#define BACKOFF_MIN_NS  1000    /* trylock: the first back-off, doubled per failure... */
#define BACKOFF_MAX_NS  1000000 /* ...up to this */
#define BARRIER_SPIN_NS 1000000 /* threads at the start barrier spin this long, then yield */
#define CS_WORK         300     /* steps of the starvation lab's critical section (~0.3 us) */
#define RING_SLOTS      1024    /* the message queue's bound */
#define CACHE_LINE      64

static double
seconds(int64_t ns)
{
    return (double)ns * 1e-9;
}

static void
sleep_ns(int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&t, NULL);
}

/* Finds s in names[0..n). Returns its index, or -1 with ValueError set. */
static int
choice(const char *what, const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown %s '%s'", what, s);
    return -1;
}

static int
check_threads(int n)
{
    if (n < 1 || n > LAB_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads must be between 1 and %d, not %d", LAB_MAX_THREADS,
                     n);
        return -1;
    }
    return 0;
}

/* ---- a team of native threads, waited for interruptibly ---------------- */

typedef struct team team;

typedef struct {
    team *team;
    int index;
} member;

struct team {
    void *ctx; /* the experiment's state */
    void (*body)(team *t, int index);
    /* The caller's, between slices (no GIL): may set stop. NULL: none. */
    void (*tick)(team *t, int64_t now);
    int64_t deadline; /* the caller sets stop at this CLOCK_MONOTONIC ns; 0: none */
    int pin;          /* thread i runs on the i-th CPU this process may use (modulo) */
    int n;
    atomic_int stop;    /* Ctrl-C, the deadline or a failed start: return soon */
    atomic_int arrived; /* at the start barrier */
    pthread_mutex_t mu;
    pthread_cond_t finished; /* signalled when running drops to 0 */
    int running;             /* under mu */
    pthread_t *ids;
    member *members;
};

static int
stopped(team *t)
{
    return atomic_load_explicit(&t->stop, memory_order_relaxed);
}

/* Waits until all n threads have arrived, so that they start together:
   spinning, so that they are running when the last arrives, and after
   BARRIER_SPIN_NS yielding too, for teams larger than the CPUs. Returns 0,
   or -1 if the team was stopped first. */
static int
team_barrier(team *t)
{
    atomic_fetch_add(&t->arrived, 1);
    int64_t patience = 0;
    for (int spin = 1; atomic_load(&t->arrived) < t->n; spin++) {
        if (stopped(t)) {
            return -1;
        }
        parpy_cpu_relax();
        if (spin % SPINS == 0) {
            int64_t now = parpy_now_ns();
            if (patience == 0) {
                patience = now + BARRIER_SPIN_NS;
            }
            else if (now > patience) {
                sched_yield();
            }
        }
    }
    return 0;
}

static void *
team_main(void *arg)
{
    member *m = arg;
    team *t = m->team;
    t->body(t, m->index);
    pthread_mutex_lock(&t->mu);
    if (--t->running == 0) {
        pthread_cond_signal(&t->finished);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Sets attr's CPUs to the k-th CPU in allowed. */
static void
pin(pthread_attr_t *attr, const cpu_set_t *allowed, int k)
{
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, allowed) && k-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_attr_setaffinity_np(attr, sizeof(one), &one);
            return;
        }
    }
}

/* Returns 0, or -1 with MemoryError set. */
static int
team_init(team *t, int n, void (*body)(team *, int), void *ctx)
{
    memset(t, 0, sizeof(*t));
    t->ids = calloc((size_t)n, sizeof(pthread_t));
    t->members = calloc((size_t)n, sizeof(member));
    if (t->ids == NULL || t->members == NULL) {
        free(t->ids);
        free(t->members);
        PyErr_NoMemory();
        return -1;
    }
    t->n = n;
    t->body = body;
    t->ctx = ctx;
    atomic_init(&t->stop, 0);
    atomic_init(&t->arrived, 0);
    pthread_mutex_init(&t->mu, NULL);
    parpy_cond_init_monotonic(&t->finished);
    return 0;
}

static void
team_free(team *t)
{
    pthread_cond_destroy(&t->finished);
    pthread_mutex_destroy(&t->mu);
    free(t->ids);
    free(t->members);
}

/* A slice of the wait for the team (no GIL): stop is set once the deadline
   passes; the tick runs after a slice that did not end the wait. */
static int
team_wait(void *arg, int64_t slice_ns)
{
    team *t = arg;
    pthread_mutex_lock(&t->mu);
    int64_t now = parpy_now_ns();
    int64_t until = now + slice_ns;
    if (t->deadline > 0 && !stopped(t)) {
        if (now >= t->deadline) {
            atomic_store(&t->stop, 1);
        }
        else if (until > t->deadline) {
            until = t->deadline;
        }
    }
    struct timespec deadline = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
    while (t->running > 0 && pthread_cond_timedwait(&t->finished, &t->mu, &deadline) != ETIMEDOUT) {
    }
    int done = t->running == 0;
    pthread_mutex_unlock(&t->mu);
    if (!done && t->tick != NULL) {
        t->tick(t, parpy_now_ns());
    }
    return done;
}

/* Starts the team's threads and waits for them interruptibly (GIL held on
   entry and return): between slices the tick runs, stop is set once the
   deadline passes, and signal handlers run. Returns 0 once every thread is
   joined; -1 with the handlers' exception set, or with RuntimeError if a
   thread could not start, once the others were stopped and joined. */
static int
run(team *t)
{
    int started = 0, error = 0, interrupted = 0;
    cpu_set_t allowed;
    int cpus =
        t->pin && sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
    t->running = t->n;
    Py_BEGIN_ALLOW_THREADS
        for (; started < t->n; started++) {
            t->members[started] = (member){t, started};
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            if (cpus > 0) {
                pin(&attr, &allowed, started % cpus);
            }
            error = pthread_create(&t->ids[started], &attr, team_main, &t->members[started]);
            pthread_attr_destroy(&attr);
            if (error != 0) {
                break;
            }
        }
        pthread_mutex_lock(&t->mu);
        t->running -= t->n - started; /* those never started */
        pthread_mutex_unlock(&t->mu);
    Py_END_ALLOW_THREADS
    if (error != 0) {
        atomic_store(&t->stop, 1); /* the started ones are at the barrier */
    }
    if (parpy_wait_interruptibly(team_wait, t) < 0) {
        interrupted = 1;
        atomic_store(&t->stop, 1);
        parpy_wait_out(team_wait, t);
    }
    Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < started; i++) {
            pthread_join(t->ids[i], NULL);
        }
    Py_END_ALLOW_THREADS
    if (error != 0 && !interrupted) {
        PyErr_Format(PyExc_RuntimeError, "can't start a native thread: %s", strerror(error));
    }
    return error != 0 || interrupted ? -1 : 0;
}

/* ---- race: one shared counter ------------------------------------------- */

enum { RACE_UNSYNCHRONIZED, RACE_MUTEX, RACE_ATOMIC };
static const char *const race_modes[] = {"unsynchronized", "mutex", "atomic"};

typedef struct {
    int64_t start, end; /* its increments began and ended (ns) */
} span;

typedef struct {
    int mode;
    long long increments;                     /* per thread */
    alignas(CACHE_LINE) atomic_llong counter; /* unsynchronized and atomic */
    alignas(CACHE_LINE) long long guarded;    /* mutex: under mu */
    pthread_mutex_t mu;
    span *spans; /* one per thread, its own until the join */
} race_ctx;

static void
race_body(team *t, int index)
{
    race_ctx *c = t->ctx;
    if (team_barrier(t) < 0) {
        return;
    }
    span *s = &c->spans[index];
    s->start = parpy_now_ns();
    for (long long i = 0; i < c->increments; i++) {
        if (i % STOP_EVERY == 0 && stopped(t)) {
            break;
        }
        switch (c->mode) {
        case RACE_UNSYNCHRONIZED: {
            /* Read, then write: another thread's increments between the two
               are overwritten (lost). Relaxed atomics: defined behaviour. */
            long long v = atomic_load_explicit(&c->counter, memory_order_relaxed);
            atomic_store_explicit(&c->counter, v + 1, memory_order_relaxed);
            break;
        }
        case RACE_MUTEX:
            pthread_mutex_lock(&c->mu);
            c->guarded++;
            pthread_mutex_unlock(&c->mu);
            break;
        default:
            atomic_fetch_add_explicit(&c->counter, 1, memory_order_relaxed);
        }
    }
    s->end = parpy_now_ns();
}

const char parpy_lab_race_doc[] = PyDoc_STR(
    "_lab_race(mode, threads, increments, /)\n--\n\n"
    "threads native threads each add 1 to one shared counter, increments times,\n"
    "after starting together: mode 'unsynchronized' (a load, then a store), 'mutex'\n"
    "or 'atomic' (fetch-add). Returns (counter, spans): each thread's (start, end)\n"
    "in seconds from the first start. The engine of parpy.lab.race.");

PyObject *
parpy_lab_race(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *mode;
    int threads;
    long long increments;
    if (!PyArg_ParseTuple(args, "siL:_lab_race", &mode, &threads, &increments)) {
        return NULL;
    }
    race_ctx c = {.increments = increments};
    c.mode = choice("mode", mode, race_modes, 3);
    if (c.mode < 0 || check_threads(threads) < 0) {
        return NULL;
    }
    if (increments < 0) {
        PyErr_SetString(PyExc_ValueError, "increments must be >= 0");
        return NULL;
    }
    c.spans = calloc((size_t)threads, sizeof(span));
    if (c.spans == NULL) {
        return PyErr_NoMemory();
    }
    atomic_init(&c.counter, 0);
    pthread_mutex_init(&c.mu, NULL);
    PyObject *result = NULL, *spans = NULL;
    team t;
    if (team_init(&t, threads, race_body, &c) < 0) {
        goto done;
    }
    /* On CPUs of their own, so that they run at once: a thread started on a
       busy CPU may otherwise wait there until the other has finished. */
    t.pin = 1;
    int rc = run(&t);
    team_free(&t);
    if (rc < 0) {
        goto done;
    }
    int64_t first = c.spans[0].start;
    for (int i = 1; i < threads; i++) {
        first = c.spans[i].start < first ? c.spans[i].start : first;
    }
    spans = PyTuple_New(threads);
    for (int i = 0; spans != NULL && i < threads; i++) {
        PyObject *item = Py_BuildValue("(dd)", seconds(c.spans[i].start - first),
                                       seconds(c.spans[i].end - first));
        if (item == NULL) {
            Py_CLEAR(spans);
            break;
        }
        PyTuple_SET_ITEM(spans, i, item);
    }
    if (spans != NULL) {
        long long counter = c.mode == RACE_MUTEX ? c.guarded : atomic_load(&c.counter);
        result = Py_BuildValue("(LN)", counter, spans);
    }
done:
    pthread_mutex_destroy(&c.mu);
    free(c.spans);
    return result;
}

/* ---- deadlock: two threads, two locks, and a watchdog ------------------- */

enum { DL_OPPOSITE, DL_ORDERED, DL_TRYLOCK };
static const char *const deadlock_modes[] = {"opposite_order", "ordered", "trylock"};

/* What a thread publishes for the watchdog, which reads it while the thread
   runs: atomics. */
typedef struct {
    atomic_int holds;           /* bit k: it holds lock k */
    atomic_int waits;           /* the lock it waits for, or -1 */
    atomic_llong waits_begun;   /* its waits so far: tells one wait from the next */
    atomic_llong wait_since;    /* ns: when the current wait began */
    atomic_llong held_since[2]; /* ns: when it took lock k */
    /* Its own, read after the join. */
    long long rounds, backoffs;
    int64_t second_at;      /* ns: when it took its second lock in round 0, or 0 */
    int64_t released;       /* ns: when it let go of its last lock and returned */
    unsigned long long rng; /* its back-off's random numbers */
} dl_thread;

/* One look at a thread, by the watchdog. */
typedef struct {
    int holds, waits;
    long long waits_begun;
    int64_t wait_since, held_since[2];
} dl_view;

typedef struct {
    int mode;
    long long rounds; /* per thread */
    int64_t timeout;  /* ns: a wait this long makes the watchdog look for a cycle */
    pthread_mutex_t locks[2];
    atomic_int holding; /* threads holding their first lock in round 0 */
    atomic_int victim;  /* set by the watchdog: this thread gives up, or -1 */
    long long shared;   /* under both locks: counts the rounds */
    dl_thread threads[2];
    /* The watchdog's (the calling thread's) own. */
    dl_view last[2];  /* the previous look */
    int cycle_seen;   /* last[] showed a cycle */
    int64_t detected; /* ns, or 0: not deadlocked */
    dl_view found[2]; /* the cycle it broke */
} dl_ctx;

/* Whether the thread should give up its wait: it is the watchdog's victim,
   or the team is stopping. */
static int
dl_giving_up(dl_ctx *c, team *t, int index)
{
    return atomic_load(&c->victim) == index || stopped(t);
}

static void
dl_view_of(dl_thread *th, dl_view *v)
{
    v->waits_begun = atomic_load(&th->waits_begun);
    v->waits = atomic_load(&th->waits);
    v->wait_since = atomic_load(&th->wait_since);
    v->holds = atomic_load(&th->holds);
    v->held_since[0] = atomic_load(&th->held_since[0]);
    v->held_since[1] = atomic_load(&th->held_since[1]);
}

static void
dl_took(dl_thread *th, int k)
{
    atomic_store(&th->held_since[k], parpy_now_ns());
    atomic_fetch_or(&th->holds, 1 << k);
}

static void
dl_release(dl_ctx *c, dl_thread *th, int k)
{
    atomic_fetch_and(&th->holds, ~(1 << k));
    atomic_store(&th->held_since[k], 0);
    pthread_mutex_unlock(&c->locks[k]);
}

/* Takes lock k for thread index, publishing the wait. breakable: by trylock
   and short sleeps, until the thread gives up (then returns -1 without the
   lock); else blocking. Returns 0 with the lock held. */
static int
dl_acquire(dl_ctx *c, team *t, int index, int k, int breakable)
{
    dl_thread *th = &c->threads[index];
    atomic_fetch_add(&th->waits_begun, 1);
    atomic_store(&th->wait_since, parpy_now_ns());
    atomic_store(&th->waits, k);
    int rc = 0;
    if (!breakable) {
        pthread_mutex_lock(&c->locks[k]);
    }
    else {
        for (int spin = 1; pthread_mutex_trylock(&c->locks[k]) != 0; spin++) {
            if (dl_giving_up(c, t, index)) {
                rc = -1;
                break;
            }
            if (spin < SPINS) {
                parpy_cpu_relax();
            }
            else {
                sleep_ns(POLL_NS);
            }
        }
    }
    if (rc == 0) {
        dl_took(th, k);
    }
    atomic_store(&th->waits, -1);
    return rc;
}

/* Round 0 of opposite_order and trylock: both threads hold their first
   lock before either asks for its second. Returns 0, or -1 if stopped. */
static int
dl_both_holding(dl_ctx *c, team *t, int index)
{
    atomic_fetch_add(&c->holding, 1);
    for (int spin = 1; atomic_load(&c->holding) < 2; spin++) {
        if (dl_giving_up(c, t, index)) {
            return -1;
        }
        if (spin % SPINS == 0) {
            sched_yield();
        }
        else {
            parpy_cpu_relax();
        }
    }
    return 0;
}

/* trylock's back-off after the second lock was busy: a random sleep of up
   to a bound that doubles with each failure in a row, so that two threads
   that keep colliding soon stop colliding (no livelock). */
static void
dl_back_off(dl_thread *th, int failures)
{
    int64_t bound = BACKOFF_MIN_NS << (failures < 10 ? failures : 10);
    bound = bound < BACKOFF_MAX_NS ? bound : BACKOFF_MAX_NS;
    th->rng ^= th->rng << 13; /* xorshift64 */
    th->rng ^= th->rng >> 7;
    th->rng ^= th->rng << 17;
    sleep_ns(1 + (int64_t)(th->rng % (unsigned long long)bound));
}

static void
dl_body(team *t, int index)
{
    dl_ctx *c = t->ctx;
    dl_thread *th = &c->threads[index];
    /* Thread 0 takes A then B; thread 1 takes B then A, except when ordered. */
    int first = c->mode == DL_ORDERED ? 0 : index;
    int second = 1 - first;
    int breakable = c->mode == DL_OPPOSITE;
    int failures = 0;
    if (team_barrier(t) < 0) {
        goto out;
    }
    for (long long round = 0; round < c->rounds && !stopped(t);) {
        if (dl_acquire(c, t, index, first, breakable) < 0) {
            break;
        }
        if (round == 0 && c->mode != DL_ORDERED && failures == 0 &&
            dl_both_holding(c, t, index) < 0) {
            dl_release(c, th, first);
            break;
        }
        if (c->mode == DL_TRYLOCK) {
            if (pthread_mutex_trylock(&c->locks[second]) != 0) {
                dl_release(c, th, first);
                th->backoffs++;
                dl_back_off(th, failures++);
                continue;
            }
            dl_took(th, second);
        }
        else if (dl_acquire(c, t, index, second, breakable) < 0) {
            dl_release(c, th, first); /* the victim: the other can go on */
            break;
        }
        if (round == 0) {
            th->second_at = parpy_now_ns();
        }
        c->shared++;
        dl_release(c, th, second);
        dl_release(c, th, first);
        th->rounds++;
        failures = 0;
        round++;
    }
out:
    th->released = parpy_now_ns();
}

static int
dl_cycle(const dl_view *v)
{
    return v[0].waits >= 0 && v[1].waits >= 0 && (v[1].holds & (1 << v[0].waits)) &&
           (v[0].holds & (1 << v[1].waits));
}

/* The watchdog, between the caller's slices. A deadlock is a cycle in the
   wait-for graph (each thread waits for a lock the other holds) seen in two
   looks in a row with the same waits, so that both waits overlapped in time
   and the cycle was real, one of which has lasted the timeout (as
   PostgreSQL's deadlock_timeout). It records the cycle and breaks it by
   choosing a victim, the thread whose wait began last, which gives up its
   wait, releases its lock and returns; the other then takes that lock and
   goes on. */
static void
dl_watch(team *t, int64_t now)
{
    dl_ctx *c = t->ctx;
    if (c->detected != 0) {
        return;
    }
    dl_view v[2];
    dl_view_of(&c->threads[0], &v[0]);
    dl_view_of(&c->threads[1], &v[1]);
    int cycle = dl_cycle(v);
    int same = cycle && c->cycle_seen && v[0].waits_begun == c->last[0].waits_begun &&
               v[1].waits_begun == c->last[1].waits_begun;
    int youngest = v[0].wait_since > v[1].wait_since ? 0 : 1;
    if (same && now - v[1 - youngest].wait_since >= c->timeout) {
        c->detected = now;
        c->found[0] = v[0];
        c->found[1] = v[1];
        atomic_store(&c->victim, youngest);
    }
    c->last[0] = v[0];
    c->last[1] = v[1];
    c->cycle_seen = cycle;
}

/* Seconds from start to ns, a new float; None when ns is 0 (never). */
static PyObject *
moment(int64_t ns, int64_t start)
{
    return ns == 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(seconds(ns - start));
}

/* Thread i's figures, a new tuple (see the docstring), or NULL with an
   exception set. */
static PyObject *
dl_result(dl_ctx *c, int i, int64_t start)
{
    dl_thread *th = &c->threads[i];
    dl_view *v = &c->found[i];
    if (c->detected == 0) {
        return Py_BuildValue("(LLNOOOOO)", th->rounds, th->backoffs, moment(th->released, start),
                             Py_None, Py_None, Py_None, Py_None, Py_None);
    }
    int held = v->holds & 1 ? 0 : 1; /* in a cycle it holds one lock */
    return Py_BuildValue("(LLNiiNNN)", th->rounds, th->backoffs, moment(th->released, start), held,
                         v->waits, moment(v->held_since[held], start), moment(v->wait_since, start),
                         moment(th->second_at, start));
}

const char parpy_lab_deadlock_doc[] = PyDoc_STR(
    "_lab_deadlock(mode, timeout, rounds, /)\n--\n\n"
    "Two native threads take two locks, A (0) and B (1), rounds times each:\n"
    "'opposite_order' (A then B, and B then A: a deadlock), 'ordered' (both A then B)\n"
    "or 'trylock' (opposite orders; a busy second lock makes a thread release its\n"
    "first and retry after a random back-off). A watchdog breaks a wait-for cycle once\n"
    "a wait has lasted timeout seconds: the victim gives up. Returns (seconds,\n"
    "detected, victim, threads), times in seconds from the start; detected and victim\n"
    "are None without a deadlock; for each thread (rounds, backoffs, released, and at\n"
    "the deadlock: held, waited for, held since, waiting since, and when it took its\n"
    "second lock after all, or None). The engine of parpy.lab.deadlock.");

PyObject *
parpy_lab_deadlock(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *mode;
    double timeout;
    long long rounds;
    if (!PyArg_ParseTuple(args, "sdL:_lab_deadlock", &mode, &timeout, &rounds)) {
        return NULL;
    }
    int m = choice("mode", mode, deadlock_modes, 3);
    if (m < 0) {
        return NULL;
    }
    if (!(timeout > 0 && timeout < 1e9) || rounds < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be > 0 (and finite), rounds >= 0");
        return NULL;
    }
    dl_ctx *c = calloc(1, sizeof(dl_ctx));
    if (c == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    c->mode = m;
    c->rounds = rounds;
    c->timeout = (int64_t)(timeout * 1e9);
    atomic_init(&c->victim, -1);
    pthread_mutex_init(&c->locks[0], NULL);
    pthread_mutex_init(&c->locks[1], NULL);
    for (int i = 0; i < 2; i++) {
        atomic_init(&c->threads[i].waits, -1);
        c->threads[i].rng = 0x9E3779B97F4A7C15ULL * (unsigned long long)(i + 1) ^
                            (unsigned long long)parpy_now_ns();
    }
    team t;
    if (team_init(&t, 2, dl_body, c) < 0) {
        goto done;
    }
    t.tick = dl_watch;
    int64_t start = parpy_now_ns();
    int rc = run(&t);
    team_free(&t);
    if (rc < 0) {
        goto done;
    }
    if (c->shared != c->threads[0].rounds + c->threads[1].rounds) {
        PyErr_SetString(PyExc_RuntimeError, "_lab_deadlock: the locks failed to exclude");
        goto done;
    }
    int64_t end = c->threads[0].released > c->threads[1].released ? c->threads[0].released
                                                                  : c->threads[1].released;
    PyObject *victim = c->detected ? PyLong_FromLong(atomic_load(&c->victim)) : Py_NewRef(Py_None);
    result = Py_BuildValue("(dNN(NN))", seconds(end - start), moment(c->detected, start), victim,
                           dl_result(c, 0, start), dl_result(c, 1, start));
done:
    pthread_mutex_destroy(&c->locks[0]);
    pthread_mutex_destroy(&c->locks[1]);
    free(c);
    return result;
}

/* ---- starvation: workers competing for one lock ------------------------- */

/* Every worker takes the lock, does a short critical section, and asks for
   it again at once: the only difference is the lock.

   unfair: a pthread mutex taken by trylock; a worker that finds it taken
   tries again after a short sleep. The worker that releases it asks again
   within nanoseconds and takes it back (barging) before a sleeping worker
   looks: the lock goes to whoever holds it and the CPU, not to whoever
   waited longest. (A blocking pthread_mutex_lock barges too, but on Linux
   its unlock wakes a waiter by a system call made with the lock free, which
   hands the lock over often enough that the counts even out in a second.)

   fair: a ticket lock, served in the order the tickets were drawn; a worker
   draws its next ticket before it releases its turn, so the workers take
   turns in strict rotation. */

enum { SV_UNFAIR, SV_FAIR };
static const char *const starvation_policies[] = {"unfair", "fair"};

typedef struct {
    long long acquisitions;
    int64_t longest_wait, total_wait; /* ns */
} sv_worker;

typedef struct {
    int policy;
    pthread_mutex_t mu;                             /* unfair */
    alignas(CACHE_LINE) atomic_llong next_ticket;   /* fair */
    alignas(CACHE_LINE) atomic_llong serving;       /* fair: the ticket whose turn it is */
    alignas(CACHE_LINE) unsigned long long guarded; /* the critical section's state */
    sv_worker *workers;                             /* one per thread, its own until the join */
} sv_ctx;

/* Waits for the lock (fair: for ticket's turn). Returns 0 with it held, or
   -1 (unfair only) if the team stopped first. */
static int
sv_lock(sv_ctx *c, team *t, long long ticket)
{
    if (c->policy == SV_UNFAIR) {
        for (int spin = 1; pthread_mutex_trylock(&c->mu) != 0; spin++) {
            if (spin % SPINS == 0) {
                if (stopped(t)) {
                    return -1;
                }
                sleep_ns(POLL_NS);
            }
            else {
                parpy_cpu_relax();
            }
        }
        return 0;
    }
    /* A drawn ticket is always served: the turns before it all end. */
    for (int spin = 1; atomic_load_explicit(&c->serving, memory_order_acquire) != ticket; spin++) {
        if (spin % SPINS == 0) {
            sched_yield(); /* the worker whose turn it is may be waiting for a CPU */
        }
        else {
            parpy_cpu_relax();
        }
    }
    return 0;
}

static void
sv_unlock(sv_ctx *c, long long ticket)
{
    if (c->policy == SV_UNFAIR) {
        pthread_mutex_unlock(&c->mu);
    }
    else {
        atomic_store_explicit(&c->serving, ticket + 1, memory_order_release);
    }
}

/* fair: the worker's place in the queue. */
static long long
sv_draw(sv_ctx *c)
{
    return c->policy == SV_FAIR ? atomic_fetch_add(&c->next_ticket, 1) : 0;
}

static void
sv_body(team *t, int index)
{
    sv_ctx *c = t->ctx;
    sv_worker *w = &c->workers[index];
    long long ticket = sv_draw(c); /* in the queue from the start */
    if (team_barrier(t) < 0) {
        return; /* only when no thread passed the barrier: no turn is served */
    }
    int64_t asked = parpy_now_ns();
    for (;;) {
        int held = sv_lock(c, t, ticket) == 0;
        int64_t wait = parpy_now_ns() - asked; /* a wait cut short by the stop counts too */
        w->total_wait += wait;
        w->longest_wait = wait > w->longest_wait ? wait : w->longest_wait;
        if (!held) {
            break;
        }
        if (stopped(t)) { /* this turn does not count */
            sv_unlock(c, ticket);
            break;
        }
        for (int i = 0; i < CS_WORK; i++) {
            c->guarded = c->guarded * 6364136223846793005ULL + 1442695040888963407ULL;
        }
        w->acquisitions++;
        /* Ask again at once: the next wait starts now. */
        asked = parpy_now_ns();
        long long turn = ticket;
        ticket = sv_draw(c);
        sv_unlock(c, turn);
    }
}

const char parpy_lab_starvation_doc[] = PyDoc_STR(
    "_lab_starvation(policy, workers, seconds, /)\n--\n\n"
    "workers native threads take one lock in a loop for seconds: 'unfair' (a\n"
    "pthread mutex whose waiters poll) or 'fair' (a ticket lock). Returns (seconds, workers): for "
    "each\n"
    "(acquisitions, longest wait, total wait), waits in seconds. The engine of\n"
    "parpy.lab.starvation.");

PyObject *
parpy_lab_starvation(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *policy;
    int workers;
    double duration;
    if (!PyArg_ParseTuple(args, "sid:_lab_starvation", &policy, &workers, &duration)) {
        return NULL;
    }
    sv_ctx c = {0};
    c.policy = choice("policy", policy, starvation_policies, 2);
    if (c.policy < 0 || check_threads(workers) < 0) {
        return NULL;
    }
    if (!(duration > 0 && duration < 1e9)) {
        PyErr_SetString(PyExc_ValueError, "seconds must be > 0 (and finite)");
        return NULL;
    }
    c.workers = calloc((size_t)workers, sizeof(sv_worker));
    if (c.workers == NULL) {
        return PyErr_NoMemory();
    }
    atomic_init(&c.next_ticket, 0);
    atomic_init(&c.serving, 0);
    pthread_mutex_init(&c.mu, NULL);
    PyObject *result = NULL, *rows = NULL;
    team t;
    if (team_init(&t, workers, sv_body, &c) < 0) {
        goto done;
    }
    int64_t start = parpy_now_ns();
    t.deadline = start + (int64_t)(duration * 1e9);
    int rc = run(&t);
    int64_t elapsed = parpy_now_ns() - start;
    team_free(&t);
    if (rc < 0) {
        goto done;
    }
    rows = PyTuple_New(workers);
    for (int i = 0; rows != NULL && i < workers; i++) {
        sv_worker *w = &c.workers[i];
        PyObject *item = Py_BuildValue("(Ldd)", w->acquisitions, seconds(w->longest_wait),
                                       seconds(w->total_wait));
        if (item == NULL) {
            Py_CLEAR(rows);
            break;
        }
        PyTuple_SET_ITEM(rows, i, item);
    }
    if (rows != NULL) {
        result = Py_BuildValue("(dN)", seconds(elapsed), rows);
    }
done:
    pthread_mutex_destroy(&c.mu);
    free(c.workers);
    return result;
}

/* ---- one reduction: a shared total, or messages to its owner ------------ */

enum { RD_SHARED, RD_MESSAGES };
static const char *const reduce_methods[] = {"shared", "messages"};

typedef struct {
    int method;
    int producers;            /* threads adding (shared) or sending (messages) */
    unsigned long long items; /* the values 1..items */
    pthread_mutex_t mu;       /* shared: guards total */
    unsigned long long total; /* shared: under mu; messages: the consumer's own */
    parpy_ring ring;          /* messages: one value per message */
    atomic_int producing;     /* messages: producers not done; the last closes the ring */
    int64_t *waited;          /* ns per thread: for the lock, for room, for a message */
    span *spans;              /* per thread, its own until the join */
} rd_ctx;

static void
rd_shared(rd_ctx *c, team *t, unsigned long long lo, unsigned long long hi, int64_t *waited)
{
    for (unsigned long long v = lo; v < hi; v++) {
        if ((v - lo) % STOP_EVERY == 0 && stopped(t)) {
            return;
        }
        if (pthread_mutex_trylock(&c->mu) != 0) { /* busy: time the wait */
            int64_t asked = parpy_now_ns();
            pthread_mutex_lock(&c->mu);
            *waited += parpy_now_ns() - asked;
        }
        c->total += v;
        pthread_mutex_unlock(&c->mu);
    }
}

/* Pushes (pops, when out is not NULL) one message; when the ring is full
   (empty) waits in slices, timed into *waited, while the team runs.
   Returns a ring code. */
static int
rd_ring(rd_ctx *c, team *t, void *item, void **out, int64_t *waited)
{
    int rc = out ? parpy_ring_pop(&c->ring, out, 0) : parpy_ring_push(&c->ring, item, 0);
    if (rc != PARPY_RING_TIMEOUT) {
        return rc;
    }
    int64_t asked = parpy_now_ns();
    while (rc == PARPY_RING_TIMEOUT && !stopped(t)) {
        rc = out ? parpy_ring_pop(&c->ring, out, PARPY_SLICE_NS)
                 : parpy_ring_push(&c->ring, item, PARPY_SLICE_NS);
    }
    *waited += parpy_now_ns() - asked;
    return rc;
}

static void rd_work(rd_ctx *c, team *t, int index);

static void
rd_body(team *t, int index)
{
    rd_ctx *c = t->ctx;
    if (team_barrier(t) < 0) {
        return;
    }
    c->spans[index].start = parpy_now_ns();
    rd_work(c, t, index);
    c->spans[index].end = parpy_now_ns();
}

static void
rd_work(rd_ctx *c, team *t, int index)
{
    int64_t *waited = &c->waited[index];
    if (index == c->producers) { /* messages: the consumer, which owns the total */
        void *msg;
        for (unsigned long long n = 1; rd_ring(c, t, NULL, &msg, waited) == PARPY_RING_OK; n++) {
            c->total += (unsigned long long)(uintptr_t)msg;
            if (n % STOP_EVERY == 0 && stopped(t)) {
                break;
            }
        }
        return;
    }
    /* This thread's share of the values: [lo, hi). */
    unsigned long long lo = c->items * (unsigned long long)index / (unsigned)c->producers + 1;
    unsigned long long hi = c->items * (unsigned long long)(index + 1) / (unsigned)c->producers + 1;
    if (c->method == RD_SHARED) {
        rd_shared(c, t, lo, hi, waited);
        return;
    }
    for (unsigned long long v = lo; v < hi; v++) {
        if (((v - lo) % STOP_EVERY == 0 && stopped(t)) ||
            rd_ring(c, t, (void *)(uintptr_t)v, NULL, waited) != PARPY_RING_OK) {
            break;
        }
    }
    if (atomic_fetch_sub(&c->producing, 1) == 1) {
        parpy_ring_close(&c->ring); /* the consumer takes what is left, then stops */
    }
}

const char parpy_lab_reduce_doc[] = PyDoc_STR(
    "_lab_reduce(method, threads, items, /)\n--\n\n"
    "The sum of 1..items over threads native threads: 'shared' (each adds its share\n"
    "to one total under a mutex) or 'messages' (each sends its values, one per\n"
    "message, over a bounded parpy ring to one more thread that owns the total).\n"
    "Returns (total, seconds from the start barrier, waited): per thread, seconds it\n"
    "waited (for the lock; for room in the ring, and last, the owner's for a message).\n"
    "The engine of parpy.lab.shared_vs_messages.");

PyObject *
parpy_lab_reduce(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *method;
    int threads;
    unsigned long long items;
    if (!PyArg_ParseTuple(args, "siK:_lab_reduce", &method, &threads, &items)) {
        return NULL;
    }
    rd_ctx c = {.producers = threads, .items = items};
    c.method = choice("method", method, reduce_methods, 2);
    if (c.method < 0 || check_threads(threads) < 0) {
        return NULL;
    }
    if (items > UINT64_C(1) << 32) { /* so that the total fits in 64 bits */
        PyErr_SetString(PyExc_ValueError, "items must be at most 2**32");
        return NULL;
    }
    int n = threads + (c.method == RD_MESSAGES);
    c.waited = calloc((size_t)n, sizeof(int64_t));
    c.spans = calloc((size_t)n, sizeof(span));
    if (c.waited == NULL || c.spans == NULL ||
        (c.method == RD_MESSAGES && parpy_ring_init(&c.ring, RING_SLOTS) < 0)) {
        free(c.waited);
        free(c.spans);
        return PyErr_NoMemory();
    }
    atomic_init(&c.producing, threads);
    pthread_mutex_init(&c.mu, NULL);
    PyObject *result = NULL, *waited = NULL;
    team t;
    if (team_init(&t, n, rd_body, &c) < 0) {
        goto done;
    }
    int rc = run(&t);
    team_free(&t);
    if (rc < 0) {
        goto done;
    }
    int64_t first = c.spans[0].start, last = c.spans[0].end; /* from the barrier on */
    for (int i = 1; i < n; i++) {
        first = c.spans[i].start < first ? c.spans[i].start : first;
        last = c.spans[i].end > last ? c.spans[i].end : last;
    }
    waited = PyTuple_New(n);
    for (int i = 0; waited != NULL && i < n; i++) {
        PyObject *item = PyFloat_FromDouble(seconds(c.waited[i]));
        if (item == NULL) {
            Py_CLEAR(waited);
            break;
        }
        PyTuple_SET_ITEM(waited, i, item);
    }
    if (waited != NULL) {
        result = Py_BuildValue("(KdN)", c.total, seconds(last - first), waited);
    }
done:
    if (c.method == RD_MESSAGES) {
        parpy_ring_destroy(&c.ring);
    }
    pthread_mutex_destroy(&c.mu);
    free(c.waited);
    free(c.spans);
    return result;
}
