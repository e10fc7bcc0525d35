/* The state of the parpy._core module (objects/module.c fills it): its
 * types and exceptions, shared by the engine and the object types. */
#ifndef PARPY_STATE_H
#define PARPY_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyTypeObject *kernel_type;
    PyTypeObject *control_type;
    PyTypeObject *batch_type;
    PyTypeObject *workqueue_type;
    PyTypeObject *queue_type;
    PyTypeObject *pipeline_type;
    PyObject *cancelled_error; /* parpy._core.Cancelled, a RuntimeError */
    PyObject *status_error;    /* parpy._core.StatusError, a RuntimeError */
    PyObject *empty_error;     /* queue.Empty */
    PyObject *full_error;      /* queue.Full */
    PyObject *shutdown_error;  /* queue.ShutDown (3.13+), else parpy's own */
    PyObject *str_set;         /* "_set": the completion method of results */
    PyObject *str_add_note;
} parpy_state;

extern PyModuleDef parpy_module_def;

/* The state of parpy._core, from any of its types or their subclasses. */
static inline parpy_state *
parpy_state_of(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &parpy_module_def);
    return module != NULL ? (parpy_state *)PyModule_GetState(module) : NULL;
}

#endif /* PARPY_STATE_H */
