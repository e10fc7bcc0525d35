/* Time and spin helpers: the monotonic clock, deadlines for condition
 * variables, and a spin-wait's pause. Plain C. */
#ifndef PARPY_RUNTIME_CLOCK_H
#define PARPY_RUNTIME_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* The monotonic clock, in nanoseconds. */
static inline int64_t
parpy_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The absolute CLOCK_MONOTONIC time ns from now (ns >= 0), as
   pthread_cond_timedwait takes it on a parpy_cond_init_monotonic cv. */
static inline struct timespec
parpy_deadline_after(int64_t ns)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t nsec = (int64_t)t.tv_nsec + ns % 1000000000;
    t.tv_sec += (time_t)(ns / 1000000000 + nsec / 1000000000);
    t.tv_nsec = (long)(nsec % 1000000000);
    return t;
}

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
static inline void
parpy_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

/* A spin-wait's pause: the CPU's hint that this thread waits on another. */
static inline void
parpy_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* PARPY_RUNTIME_CLOCK_H */
