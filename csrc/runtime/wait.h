/* The interruptible wait: a wait without the GIL, in slices, between which
 * the waiting thread takes the GIL back to run signal handlers (Ctrl-C).
 * Every wait of a Python thread on native work or on another thread goes
 * through here, with one slice length. */
#ifndef PARPY_RUNTIME_WAIT_H
#define PARPY_RUNTIME_WAIT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A waiting thread looks up (signal handlers, a deadline, a watchdog) this
   often. */
#define PARPY_SLICE_NS 20000000LL

/* One slice of a wait, no GIL: waits at most slice_ns for what arg waits
   for; returns 1 once the wait is over, else 0. */
typedef int (*parpy_wait_fn)(void *arg, int64_t slice_ns);

/* GIL held: calls wait(arg, PARPY_SLICE_NS) with the GIL released until it
   returns 1, running signal handlers between slices. Returns 0, or -1 with
   the handlers' exception set (the wait is then not over). */
int parpy_wait_interruptibly(parpy_wait_fn wait, void *arg);

/* GIL held: the same without signal handlers, for the end of a wait that
   was interrupted (whatever was asked to stop comes to rest). A raised
   exception stays raised. */
void parpy_wait_out(parpy_wait_fn wait, void *arg);

#endif /* PARPY_RUNTIME_WAIT_H */
