/* parpy._core.Kernel: a native kernel as a Python callable. Its layout,
 * parpy_KernelObject, is engine/call.h's. */
#ifndef PARPY_OBJECTS_KERNEL_H
#define PARPY_OBJECTS_KERNEL_H

#include "parpy.h"

PyTypeObject *parpy_kernel_type_new(PyObject *module);
PyObject *parpy_kernel_new(PyTypeObject *type, const parpy_kernel *kernel);

/* objects/user_kernel.c: users' C functions as kernels. */
PyObject *parpy_kernel_from_cfunc(PyObject *cls, PyObject *args, PyObject *kwargs);
PyObject *parpy_kernel_from_library(PyObject *cls, PyObject *args, PyObject *kwargs);
PyObject *parpy_kernel_unpickle(PyObject *module, PyObject *args);
/* Frees what such a kernel owns (parpy_KernelObject.owned). */
void parpy_user_kernel_free(void *owned);
/* The signature of such a kernel's table, into buf. */
const char *parpy_user_kernel_signature(const parpy_kernel *kernel, char *buf, size_t len);
/* The address of such a kernel's function. */
void *parpy_user_kernel_address(const parpy_kernel *kernel);

#endif /* PARPY_OBJECTS_KERNEL_H */
