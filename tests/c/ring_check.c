/* Checks parpy_ring (csrc/runtime/ring.c), the plain-C bounded MPMC queue, on its
 * own: timeouts, blocking and waking, many producers and consumers, close,
 * stop, drain, growth and a changed maxsize. Built and run by
 * tests/test_ring.py, also under ThreadSanitizer and AddressSanitizer.
 * Prints "ring ok" and exits 0, or names the failed check and exits 1.
 */
#include "runtime/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "ring_check.c:%d: failed: %s\n", __LINE__, #cond); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define MS 1000000LL

static double
now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void *
item(uintptr_t v)
{
    return (void *)(v + 1); /* never NULL */
}

static uintptr_t
value(void *p)
{
    return (uintptr_t)p - 1;
}

/* ---- many producers and consumers ---------------------------------------- */

#define PRODUCERS    4
#define CONSUMERS    4
#define PER_PRODUCER 50000

typedef struct {
    parpy_ring *q;
    int id;
    long count;
    uintptr_t last[PRODUCERS]; /* per producer: the last value seen + 1 */
    int in_order;
} worker;

static void *
produce(void *arg)
{
    worker *w = arg;
    for (uintptr_t k = 0; k < PER_PRODUCER; k++) {
        CHECK(parpy_ring_push(w->q, item((uintptr_t)w->id * PER_PRODUCER + k), -1) ==
              PARPY_RING_OK);
    }
    return NULL;
}

static void *
consume(void *arg)
{
    worker *w = arg;
    w->in_order = 1;
    void *p;
    int rc;
    while ((rc = parpy_ring_pop(w->q, &p, -1)) == PARPY_RING_OK) {
        uintptr_t v = value(p);
        int producer = (int)(v / PER_PRODUCER);
        uintptr_t k = v % PER_PRODUCER;
        if (k + 1 <= w->last[producer]) {
            w->in_order = 0; /* one producer's items reach a consumer in order */
        }
        w->last[producer] = k + 1;
        w->count++;
    }
    CHECK(rc == PARPY_RING_CLOSED);
    return NULL;
}

static void
many_producers_and_consumers(size_t maxsize)
{
    parpy_ring q;
    CHECK(parpy_ring_init(&q, maxsize) == 0);
    pthread_t threads[PRODUCERS + CONSUMERS];
    worker workers[PRODUCERS + CONSUMERS] = {{0}};
    for (int i = 0; i < CONSUMERS; i++) {
        workers[PRODUCERS + i].q = &q;
        CHECK(pthread_create(&threads[PRODUCERS + i], NULL, consume, &workers[PRODUCERS + i]) == 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        workers[i].q = &q;
        workers[i].id = i;
        CHECK(pthread_create(&threads[i], NULL, produce, &workers[i]) == 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(threads[i], NULL);
    }
    parpy_ring_close(&q);
    long total = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(threads[PRODUCERS + i], NULL);
        total += workers[PRODUCERS + i].count;
        CHECK(workers[PRODUCERS + i].in_order);
    }
    CHECK(total == (long)PRODUCERS * PER_PRODUCER); /* none lost, none twice (in order) */
    CHECK(parpy_ring_size(&q) == 0);
    parpy_ring_destroy(&q);
}

/* ---- blocking, waking, timeouts ------------------------------------------ */

typedef struct {
    parpy_ring *q;
    int rc;
    void *got;
    double waited_ms;
} waiter;

static void *
blocked_push(void *arg)
{
    waiter *w = arg;
    double t = now_ms();
    w->rc = parpy_ring_push(w->q, item(99), 5000 * MS);
    w->waited_ms = now_ms() - t;
    return NULL;
}

static void *
blocked_pop(void *arg)
{
    waiter *w = arg;
    double t = now_ms();
    w->rc = parpy_ring_pop(w->q, &w->got, 5000 * MS);
    w->waited_ms = now_ms() - t;
    return NULL;
}

static void
sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void
timeouts_and_wakeups(void)
{
    parpy_ring q;
    void *p;
    CHECK(parpy_ring_init(&q, 3) == 0);
    for (uintptr_t k = 0; k < 3; k++) {
        CHECK(parpy_ring_push(&q, item(k), 0) == PARPY_RING_OK);
    }
    CHECK(parpy_ring_push(&q, item(3), 0) == PARPY_RING_TIMEOUT); /* full */
    double t = now_ms();
    CHECK(parpy_ring_push(&q, item(3), 50 * MS) == PARPY_RING_TIMEOUT);
    CHECK(now_ms() - t >= 45);

    /* a full queue: a blocked push goes on when a pop makes room */
    waiter w = {.q = &q};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_push, &w) == 0);
    sleep_ms(50);
    CHECK(parpy_ring_pop(&q, &p, 0) == PARPY_RING_OK && value(p) == 0);
    pthread_join(th, NULL);
    CHECK(w.rc == PARPY_RING_OK && w.waited_ms >= 40 && w.waited_ms < 4000);
    for (uintptr_t k = 1; k < 3; k++) {
        CHECK(parpy_ring_pop(&q, &p, 0) == PARPY_RING_OK && value(p) == k); /* FIFO */
    }
    CHECK(parpy_ring_pop(&q, &p, 0) == PARPY_RING_OK && value(p) == 99);

    /* an empty queue: pop times out, or goes on when a push comes */
    CHECK(parpy_ring_pop(&q, &p, 0) == PARPY_RING_TIMEOUT);
    t = now_ms();
    CHECK(parpy_ring_pop(&q, &p, 30 * MS) == PARPY_RING_TIMEOUT);
    CHECK(now_ms() - t >= 25);
    waiter r = {.q = &q};
    CHECK(pthread_create(&th, NULL, blocked_pop, &r) == 0);
    sleep_ms(50);
    CHECK(parpy_ring_waiting(&q) == 1);
    CHECK(parpy_ring_push(&q, item(7), 0) == PARPY_RING_OK);
    pthread_join(th, NULL);
    CHECK(r.rc == PARPY_RING_OK && value(r.got) == 7 && r.waited_ms >= 40);

    /* a larger maxsize lets a blocked push go on */
    for (uintptr_t k = 0; k < 3; k++) {
        CHECK(parpy_ring_push(&q, item(k), 0) == PARPY_RING_OK);
    }
    waiter g = {.q = &q};
    CHECK(pthread_create(&th, NULL, blocked_push, &g) == 0);
    sleep_ms(30);
    parpy_ring_set_maxsize(&q, 10);
    pthread_join(th, NULL);
    CHECK(g.rc == PARPY_RING_OK && parpy_ring_size(&q) == 4);
    parpy_ring_destroy(&q);
}

/* ---- close, stop, drain, growth ------------------------------------------ */

static uintptr_t drained_sum;

static void
add_drained(void *p, void *arg)
{
    (void)arg;
    drained_sum += value(p);
}

static void
close_stop_drain(void)
{
    parpy_ring q;
    void *p;
    /* unbounded: grows far past its first slots, keeping FIFO order */
    CHECK(parpy_ring_init(&q, 0) == 0);
    for (uintptr_t k = 0; k < 10000; k++) {
        CHECK(parpy_ring_push(&q, item(k), 0) == PARPY_RING_OK);
        if (k % 3 == 0) {
            CHECK(parpy_ring_pop(&q, &p, 0) == PARPY_RING_OK && value(p) == k / 3);
        }
    }
    /* close: no more pushes; pops drain what is left, then say closed */
    parpy_ring_close(&q);
    CHECK(parpy_ring_push(&q, item(0), 0) == PARPY_RING_CLOSED);
    size_t left = parpy_ring_size(&q);
    uintptr_t expect = 3334;
    for (size_t i = 0; i < left; i++) {
        CHECK(parpy_ring_pop(&q, &p, -1) == PARPY_RING_OK && value(p) == expect++);
    }
    CHECK(parpy_ring_pop(&q, &p, -1) == PARPY_RING_CLOSED);
    parpy_ring_destroy(&q);

    /* stop: blocked consumers and producers leave at once; drain takes the rest */
    CHECK(parpy_ring_init(&q, 2) == 0);
    waiter r = {.q = &q};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_pop, &r) == 0);
    sleep_ms(30);
    CHECK(parpy_ring_push(&q, item(5), 0) == PARPY_RING_OK); /* taken by the blocked pop */
    pthread_join(th, NULL);
    CHECK(r.rc == PARPY_RING_OK && value(r.got) == 5);
    CHECK(parpy_ring_push(&q, item(1), 0) == PARPY_RING_OK);
    CHECK(parpy_ring_push(&q, item(2), 0) == PARPY_RING_OK);
    waiter w = {.q = &q};
    CHECK(pthread_create(&th, NULL, blocked_push, &w) == 0);
    sleep_ms(30);
    parpy_ring_stop(&q);
    pthread_join(th, NULL);
    CHECK(w.rc == PARPY_RING_STOPPED && w.waited_ms < 4000);
    CHECK(parpy_ring_pop(&q, &p, -1) == PARPY_RING_STOPPED);
    drained_sum = 0;
    CHECK(parpy_ring_drain(&q, add_drained, NULL) == 2 && drained_sum == 3);
    CHECK(parpy_ring_size(&q) == 0 && parpy_ring_closed(&q));
    parpy_ring_destroy(&q);
}

int
main(void)
{
    timeouts_and_wakeups();
    close_stop_drain();
    many_producers_and_consumers(64);
    many_producers_and_consumers(1);
    many_producers_and_consumers(0);
    puts("ring ok");
    return 0;
}
