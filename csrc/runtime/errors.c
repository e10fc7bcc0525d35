/* The runtime's Python exceptions (GIL held). */
#include "runtime/errors.h"

PyObject *
parpy_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

void
parpy_restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

int
parpy_check_memory(const char *what, uint64_t need)
{
    if (need < PARPY_MEMORY_CHECK_MIN) {
        return 0;
    }
    uint64_t budget = parpy_memory_budget();
    if (need <= budget) {
        return 0;
    }
    PyErr_Format(PyExc_MemoryError,
                 "%s needs about %llu MiB of memory; this process may use %llu MiB", what,
                 (unsigned long long)(need >> 20), (unsigned long long)(budget >> 20));
    return -1;
}

void
parpy_name_memory_error(const char *who, const char *what)
{
    if (!PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return;
    }
    PyObject *exc = parpy_fetch_exception();
    PyObject *args = ((PyBaseExceptionObject *)exc)->args;
    PyObject *tb = PyException_GetTraceback(exc);
    int bare = (args == NULL || PyTuple_GET_SIZE(args) == 0) && tb == NULL;
    Py_XDECREF(tb);
    if (!bare) {
        parpy_restore_exception(exc);
        return;
    }
    Py_DECREF(exc);
    PyErr_Format(PyExc_MemoryError, "%s: out of memory for %s", who, what);
}

int
parpy_ring_check_owned(const parpy_ring *q, const char *what)
{
    if (!parpy_ring_inherited(q)) {
        return 0;
    }
    PyErr_Format(PyExc_RuntimeError,
                 "%s was made before this process was forked: it belongs to the parent's "
                 "threads and cannot be used in the child (make a new one here)",
                 what);
    return -1;
}
