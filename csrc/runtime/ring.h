/* parpy_ring: a plain-C multi-producer multi-consumer FIFO of pointers.
 *
 * Bounded by maxsize (0: unbounded); pushes block while it is full and pops
 * while it is empty, each up to a timeout, without the GIL (the caller
 * releases it). close() lets consumers drain what is left; stop() makes
 * every push and pop fail at once.
 * A ring made before the process forked belongs to the parent's threads
 * (one of them may have held its lock at the fork): in the child it is
 * inert, its lock never taken; it reads as stopped, and destroy only frees
 * its slots.
 */
#ifndef PARPY_RUNTIME_RING_H
#define PARPY_RUNTIME_RING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **slots; /* circular, capacity slots */
    size_t capacity, head, count;
    size_t maxsize;
    int closed, stopped;
    int waiting_pop;     /* consumers blocked in pop */
    int waiting_push;    /* producers blocked in push */
    unsigned generation; /* parpy_fork_generation() when it was made */
} parpy_ring;

enum {
    PARPY_RING_OK = 0,
    PARPY_RING_TIMEOUT = 1, /* full (push) or empty (pop) until the timeout */
    PARPY_RING_CLOSED = 2,  /* push: closed; pop: closed and empty */
    PARPY_RING_STOPPED = 3,
    PARPY_RING_NOMEM = 4,
};

int parpy_ring_init(parpy_ring *q, size_t maxsize); /* 0, or -1 (errno) */
/* Whether q was made before a fork: in the parent's threads, not ours. */
int parpy_ring_inherited(const parpy_ring *q);
void parpy_ring_destroy(parpy_ring *q);
/* timeout_ns < 0: wait as long as it takes; 0: do not wait. */
int parpy_ring_push(parpy_ring *q, void *item, int64_t timeout_ns);
int parpy_ring_pop(parpy_ring *q, void **item, int64_t timeout_ns);
void parpy_ring_close(parpy_ring *q);
void parpy_ring_stop(parpy_ring *q);
/* Removes every item; returns how many went to fn(item, arg). */
size_t parpy_ring_drain(parpy_ring *q, void (*fn)(void *item, void *arg), void *arg);
/* Calls fn(item, arg) on each item in order, under the lock, until fn
   returns non-zero; returns that. fn must not use the ring. */
int parpy_ring_foreach(parpy_ring *q, int (*fn)(void *item, void *arg), void *arg);
size_t parpy_ring_size(parpy_ring *q);
int parpy_ring_waiting(parpy_ring *q); /* consumers blocked in pop */
int parpy_ring_closed(parpy_ring *q);
void parpy_ring_set_maxsize(parpy_ring *q, size_t maxsize);

#endif /* PARPY_RUNTIME_RING_H */
