/* ThreadSanitizer annotations. Plain C.
 *
 * Happens-before edges that TSan cannot see by itself: GNU OpenMP's region
 * entry and exit are futexes and atomics inside uninstrumented libgomp.
 * What a thread did before PARPY_HAPPENS_BEFORE(addr) happens before what
 * another thread does after a later PARPY_HAPPENS_AFTER(addr) on the same
 * address. No-ops unless built with PARPY_SANITIZE=thread.
 */
#ifndef PARPY_RUNTIME_TSAN_H
#define PARPY_RUNTIME_TSAN_H

#ifdef PARPY_TSAN
#include <sanitizer/tsan_interface.h>
#define PARPY_HAPPENS_BEFORE(addr) __tsan_release((void *)(addr))
#define PARPY_HAPPENS_AFTER(addr)  __tsan_acquire((void *)(addr))
/* Leaves a function (and the OpenMP regions outlined from it) out of TSan's
   instrumentation. Only for the hand-off of a region's arguments. */
#define PARPY_NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define PARPY_HAPPENS_BEFORE(addr) ((void)(addr))
#define PARPY_HAPPENS_AFTER(addr)  ((void)(addr))
#define PARPY_NO_TSAN
#endif

#endif /* PARPY_RUNTIME_TSAN_H */
