/* The interruptible wait. */
#include "runtime/wait.h"

int
parpy_wait_interruptibly(parpy_wait_fn wait, void *arg)
{
    for (;;) {
        int done;
        Py_BEGIN_ALLOW_THREADS
            done = wait(arg, PARPY_SLICE_NS);
        Py_END_ALLOW_THREADS
        if (done) {
            return 0;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

void
parpy_wait_out(parpy_wait_fn wait, void *arg)
{
    Py_BEGIN_ALLOW_THREADS
        while (!wait(arg, PARPY_SLICE_NS)) {
        }
    Py_END_ALLOW_THREADS
}
