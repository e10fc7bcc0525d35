/* Fork generations: rings and other objects made before a fork belong to
 * the parent's threads. Plain C. */
#define _POSIX_C_SOURCE 200809L /* before any system header: plain C, no Python.h */

#include "runtime/fork.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_uint fork_generation = 0;

/* In a forked child, alone: rings made so far are the parent's. */
static void
count_fork(void)
{
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

unsigned
parpy_fork_generation(void)
{
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

int
parpy_fork_init(void)
{
    static int done = 0;
    if (!done) {
        if (pthread_atfork(NULL, NULL, count_fork) != 0) {
            return -1;
        }
        done = 1;
    }
    return 0;
}
