/* parpy._core.Queue (parpy.Queue): queue.Queue's API on a parpy_ring. */
#ifndef PARPY_OBJECTS_QUEUE_H
#define PARPY_OBJECTS_QUEUE_H

#include "parpy.h"

PyTypeObject *parpy_queue_type_new(PyObject *module);

#endif /* PARPY_OBJECTS_QUEUE_H */
