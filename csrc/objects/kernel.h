/* parpy._core.Kernel: a native kernel as a Python callable. Its layout,
 * parpy_KernelObject, is engine/call.h's. */
#ifndef PARPY_OBJECTS_KERNEL_H
#define PARPY_OBJECTS_KERNEL_H

#include "parpy.h"

PyTypeObject *parpy_kernel_type_new(PyObject *module);
PyObject *parpy_kernel_new(PyTypeObject *type, const parpy_kernel *kernel);

#endif /* PARPY_OBJECTS_KERNEL_H */
