/* parpy_ring: a plain-C bounded multi-producer multi-consumer FIFO of
 * pointers, under everything that hands work between threads (the work
 * queue of the pools; the stage queues of pipelines).
 *
 * No Python inside: the caller owns what the pointers refer to, and releases
 * the GIL around the calls that may wait. One mutex and two condition
 * variables (CLOCK_MONOTONIC, for the timeouts); the slots are a circular
 * buffer that grows by doubling, so maxsize may change at any time and 0
 * means unbounded.
 *
 * A child forked while a ring is in use has none of the threads that use
 * it, and one of them may have held its lock: a ring made in an earlier
 * fork generation (fork.c) is never locked.
 */
#define _POSIX_C_SOURCE 200809L /* before any system header: plain C, no Python.h */

#include "runtime/ring.h"

#include "runtime/clock.h"
#include "runtime/fork.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define INITIAL_CAPACITY 16

int
parpy_ring_inherited(const parpy_ring *q)
{
    return q->generation != parpy_fork_generation();
}

int
parpy_ring_init(parpy_ring *q, size_t maxsize)
{
    q->slots = malloc(INITIAL_CAPACITY * sizeof(void *));
    if (q->slots == NULL) {
        return -1;
    }
    q->capacity = INITIAL_CAPACITY;
    q->head = q->count = 0;
    q->maxsize = maxsize;
    q->closed = q->stopped = 0;
    q->waiting_pop = q->waiting_push = 0;
    q->generation = parpy_fork_generation();
    pthread_mutex_init(&q->mu, NULL);
    parpy_cond_init_monotonic(&q->not_empty);
    parpy_cond_init_monotonic(&q->not_full);
    return 0;
}

void
parpy_ring_destroy(parpy_ring *q)
{
    if (parpy_ring_inherited(q)) { /* waiters that do not exist here: no destroy */
        free(q->slots);
        q->slots = NULL;
        return;
    }
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->mu);
    free(q->slots);
    q->slots = NULL;
}

/* Waits on cv (mu held) until woken or the deadline. Returns 0, or
   ETIMEDOUT once the deadline passed. */
static int
wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline)
{
    if (deadline == NULL) {
        pthread_cond_wait(cv, mu);
        return 0;
    }
    return pthread_cond_timedwait(cv, mu, deadline) == ETIMEDOUT ? ETIMEDOUT : 0;
}

static int
full_locked(const parpy_ring *q)
{
    return q->maxsize > 0 && q->count >= q->maxsize;
}

/* Doubles the slots. Returns 0, or -1 if out of memory. */
static int
grow_locked(parpy_ring *q)
{
    size_t cap = q->capacity * 2;
    void **slots = malloc(cap * sizeof(void *));
    if (slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < q->count; i++) {
        slots[i] = q->slots[(q->head + i) % q->capacity];
    }
    free(q->slots);
    q->slots = slots;
    q->capacity = cap;
    q->head = 0;
    return 0;
}

int
parpy_ring_push(parpy_ring *q, void *item, int64_t timeout_ns)
{
    if (parpy_ring_inherited(q)) {
        return PARPY_RING_STOPPED;
    }
    struct timespec deadline;
    if (timeout_ns > 0) {
        deadline = parpy_deadline_after(timeout_ns);
    }
    int rc = PARPY_RING_OK;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->stopped) {
            rc = PARPY_RING_STOPPED;
            break;
        }
        if (q->closed) {
            rc = PARPY_RING_CLOSED;
            break;
        }
        if (!full_locked(q)) {
            break;
        }
        if (timeout_ns == 0) {
            rc = PARPY_RING_TIMEOUT;
            break;
        }
        q->waiting_push++;
        int timed_out =
            wait_until(&q->not_full, &q->mu, timeout_ns > 0 ? &deadline : NULL) == ETIMEDOUT;
        q->waiting_push--;
        if (timed_out && full_locked(q) && !q->stopped && !q->closed) {
            rc = PARPY_RING_TIMEOUT;
            break;
        }
    }
    if (rc == PARPY_RING_OK && q->count == q->capacity && grow_locked(q) < 0) {
        rc = PARPY_RING_NOMEM;
    }
    if (rc == PARPY_RING_OK) {
        q->slots[(q->head + q->count) % q->capacity] = item;
        q->count++;
        if (q->waiting_pop > 0) {
            pthread_cond_signal(&q->not_empty);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int
parpy_ring_pop(parpy_ring *q, void **item, int64_t timeout_ns)
{
    if (parpy_ring_inherited(q)) {
        return PARPY_RING_STOPPED;
    }
    struct timespec deadline;
    if (timeout_ns > 0) {
        deadline = parpy_deadline_after(timeout_ns);
    }
    int rc = PARPY_RING_OK;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->stopped) {
            rc = PARPY_RING_STOPPED;
            break;
        }
        if (q->count > 0) {
            break;
        }
        if (q->closed) {
            rc = PARPY_RING_CLOSED;
            break;
        }
        if (timeout_ns == 0) {
            rc = PARPY_RING_TIMEOUT;
            break;
        }
        q->waiting_pop++;
        int timed_out =
            wait_until(&q->not_empty, &q->mu, timeout_ns > 0 ? &deadline : NULL) == ETIMEDOUT;
        q->waiting_pop--;
        if (timed_out && q->count == 0 && !q->stopped && !q->closed) {
            rc = PARPY_RING_TIMEOUT;
            break;
        }
    }
    if (rc == PARPY_RING_OK) {
        *item = q->slots[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        if (q->waiting_push > 0) {
            pthread_cond_signal(&q->not_full);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void
parpy_ring_close(parpy_ring *q)
{
    if (parpy_ring_inherited(q)) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

void
parpy_ring_stop(parpy_ring *q)
{
    if (parpy_ring_inherited(q)) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->closed = q->stopped = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

size_t
parpy_ring_drain(parpy_ring *q, void (*fn)(void *item, void *arg), void *arg)
{
    if (parpy_ring_inherited(q)) {
        return 0;
    }
    /* Unlinked under the lock, handed to fn outside it: fn may take the GIL
       or push to this ring. */
    pthread_mutex_lock(&q->mu);
    size_t n = q->count;
    void **items = n ? malloc(n * sizeof(void *)) : NULL;
    if (items == NULL) {
        n = 0; /* out of memory: nothing is drained */
    }
    for (size_t i = 0; i < n; i++) {
        items[i] = q->slots[(q->head + i) % q->capacity];
    }
    q->head = (q->head + n) % q->capacity;
    q->count -= n;
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < n; i++) {
        fn(items[i], arg);
    }
    free(items);
    return n;
}

int
parpy_ring_foreach(parpy_ring *q, int (*fn)(void *item, void *arg), void *arg)
{
    if (parpy_ring_inherited(q)) {
        return 0;
    }
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->count && rc == 0; i++) {
        rc = fn(q->slots[(q->head + i) % q->capacity], arg);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

size_t
parpy_ring_size(parpy_ring *q)
{
    if (parpy_ring_inherited(q)) {
        return q->count;
    }
    pthread_mutex_lock(&q->mu);
    size_t n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int
parpy_ring_waiting(parpy_ring *q)
{
    if (parpy_ring_inherited(q)) {
        return 0;
    }
    pthread_mutex_lock(&q->mu);
    int n = q->waiting_pop;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int
parpy_ring_closed(parpy_ring *q)
{
    if (parpy_ring_inherited(q)) {
        return 1;
    }
    pthread_mutex_lock(&q->mu);
    int closed = q->closed;
    pthread_mutex_unlock(&q->mu);
    return closed;
}

void
parpy_ring_set_maxsize(parpy_ring *q, size_t maxsize)
{
    if (parpy_ring_inherited(q)) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->maxsize = maxsize;
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}
