/* parpy._core.Control: the cancel flag and progress counter of one call.
 *
 * The Python layer makes one per map-style call that can be cancelled from
 * another thread (Pool.terminate) or shows progress; native workers read the
 * flag and count finished items without the GIL.
 */
#include "engine/control.h"

#include <structmember.h>

static PyObject *
control_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Control() takes no arguments");
        return NULL;
    }
    parpy_control *self = (parpy_control *)type->tp_alloc(type, 0);
    if (self != NULL) {
        atomic_init(&self->cancel, 0);
        atomic_init(&self->done, 0);
    }
    return (PyObject *)self;
}

static void
control_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (((parpy_control *)self)->weakrefs != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
control_cancel(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    atomic_store(&((parpy_control *)self)->cancel, 1);
    Py_RETURN_NONE;
}

static PyObject *
control_add(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "Control.add: n must be >= 0");
        return NULL;
    }
    atomic_fetch_add_explicit(&((parpy_control *)self)->done, (size_t)n, memory_order_relaxed);
    Py_RETURN_NONE;
}

static PyObject *
control_get_cancelled(PyObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(atomic_load(&((parpy_control *)self)->cancel));
}

static PyObject *
control_get_done(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(
        atomic_load_explicit(&((parpy_control *)self)->done, memory_order_relaxed));
}

static PyMethodDef control_methods[] = {
    {"cancel", control_cancel, METH_NOARGS,
     "cancel($self, /)\n--\n\nAsk the call's native workers to stop at the next item."},
    {"add", control_add, METH_O, "add($self, n, /)\n--\n\nCount n more finished items."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef control_getset[] = {
    {"cancelled", control_get_cancelled, NULL, "True once cancel() was called.", NULL},
    {"done", control_get_done, NULL, "Items finished so far.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef control_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(parpy_control, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot control_slots[] = {
    {Py_tp_members, control_members},
    {Py_tp_new, control_new},
    {Py_tp_dealloc, control_dealloc},
    {Py_tp_methods, control_methods},
    {Py_tp_getset, control_getset},
    {Py_tp_doc, "Control()\n--\n\nCancel flag and finished-item counter of one call."},
    {0, NULL},
};

static PyType_Spec control_spec = {
    .name = "parpy._core.Control",
    .basicsize = sizeof(parpy_control),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = control_slots,
};

PyTypeObject *
parpy_control_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &control_spec, NULL);
}
