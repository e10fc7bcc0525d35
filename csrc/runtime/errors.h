/* The runtime's Python exceptions (GIL held): the raised exception taken
 * and restored, MemoryError from the memory budget or with a message that
 * names what failed, RuntimeError for a ring a fork left behind. */
#ifndef PARPY_RUNTIME_ERRORS_H
#define PARPY_RUNTIME_ERRORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "runtime/memory.h"
#include "runtime/ring.h"

/* Takes the raised exception: returns a new reference to it, normalised and
   carrying its traceback, and clears the error indicator. */
PyObject *parpy_fetch_exception(void);
/* Raises exc (a new reference, stolen). */
void parpy_restore_exception(PyObject *exc);

/* Raises MemoryError, naming what, if need bytes exceed the memory budget
   (parpy_memory_budget). Returns 0, or -1 with the exception set. */
int parpy_check_memory(const char *what, uint64_t need);

/* The MemoryError that an allocation in the C API raises has no message
   (and no traceback): this replaces it with "<who>: out of memory for
   <what>". Any other exception, a MemoryError raised by Python code
   included, is left as it is. */
void parpy_name_memory_error(const char *who, const char *what);

/* Raises RuntimeError naming what (e.g. "parpy.Queue") and returns -1 if
   q is inherited from before a fork; else returns 0. */
int parpy_ring_check_owned(const parpy_ring *q, const char *what);

#endif /* PARPY_RUNTIME_ERRORS_H */
