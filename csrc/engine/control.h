/* parpy._core.Control: the cancel flag and progress counter of one call. */
#ifndef PARPY_ENGINE_CONTROL_H
#define PARPY_ENGINE_CONTROL_H

#include "parpy.h"

typedef struct {
    PyObject_HEAD
    atomic_int cancel;  /* set from any thread: the call's workers stop */
    atomic_size_t done; /* items finished, counted by the workers */
    PyObject *weakrefs; /* the pool that started the call keeps a weak set */
} parpy_control;

PyTypeObject *parpy_control_type_new(PyObject *module);

#endif /* PARPY_ENGINE_CONTROL_H */
