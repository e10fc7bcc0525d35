/* The native half of parpy.lab: module functions (METH_VARARGS). */
#ifndef PARPY_LAB_H
#define PARPY_LAB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *parpy_lab_race(PyObject *module, PyObject *args);
PyObject *parpy_lab_deadlock(PyObject *module, PyObject *args);
PyObject *parpy_lab_starvation(PyObject *module, PyObject *args);
PyObject *parpy_lab_reduce(PyObject *module, PyObject *args);
PyObject *parpy_lab_divide(PyObject *module, PyObject *args);
extern const char parpy_lab_race_doc[], parpy_lab_deadlock_doc[], parpy_lab_starvation_doc[],
    parpy_lab_reduce_doc[], parpy_lab_divide_doc[];

#endif /* PARPY_LAB_H */
