/* parpy._core.WorkQueue: the work queue of parpy.Pool and
 * parpy.ThreadPoolExecutor. */
#ifndef PARPY_ENGINE_WORKQUEUE_H
#define PARPY_ENGINE_WORKQUEUE_H

#include "parpy.h"

PyTypeObject *parpy_workqueue_type_new(PyObject *module);

#endif /* PARPY_ENGINE_WORKQUEUE_H */
