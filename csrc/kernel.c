/* parpy._core.Kernel: a native kernel as a Python callable.
 *
 * Calling a kernel runs it on one item (parpy_run_one); every parpy executor
 * recognises the type and runs whole batches of it in C.
 */
#include "parpy.h"

#include <structmember.h>

PyObject *
parpy_kernel_call(const parpy_kernel *k, PyObject *const *args, Py_ssize_t nargs,
                  parpy_control *control)
{
    if (nargs != k->arity) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %d argument%s (%zd given)", k->name,
                     k->arity, k->arity == 1 ? "" : "s", nargs);
        return NULL;
    }
    union {
        char bytes[PARPY_ITEM_MAX];
        max_align_t align;
    } item;
    assert(k->item_size <= sizeof(item));
    if (k->parse(args, &item) < 0 || (k->prepare != NULL && k->prepare(&item) < 0)) {
        return NULL;
    }
    return parpy_run_one(k, &item, control);
}

static PyObject *
kernel_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    const parpy_kernel *k = ((parpy_KernelObject *)self)->kernel;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", k->name);
        return NULL;
    }
    return parpy_kernel_call(k, args, PyVectorcall_NARGS(nargsf), NULL);
}

static void
kernel_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
kernel_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<parpy kernel %s>", ((parpy_KernelObject *)self)->kernel->name);
}

/* Pickled by name, as functions are: parpy.<name>. */
static PyObject *
kernel_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(((parpy_KernelObject *)self)->kernel->name);
}

static PyObject *
kernel_get_name(PyObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(((parpy_KernelObject *)self)->kernel->name);
}

static PyObject *
kernel_get_module(PyObject *Py_UNUSED(self), void *Py_UNUSED(closure))
{
    return PyUnicode_FromString("parpy");
}

static PyObject *
kernel_get_doc(PyObject *self, void *Py_UNUSED(closure))
{
    /* The "name(sig)\n--\n\n" header is for __text_signature__ only. */
    const char *doc = ((parpy_KernelObject *)self)->kernel->doc;
    const char *body = strstr(doc, "\n--\n\n");
    return PyUnicode_FromString(body ? body + 5 : doc);
}

static PyObject *
kernel_get_text_signature(PyObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(((parpy_KernelObject *)self)->kernel->signature);
}

/* inspect.Signature of the kernel: positional-only parameters named after
   the kernel table's signature, e.g. "(n, m, /)". */
static PyObject *
kernel_get_signature(PyObject *self, void *Py_UNUSED(closure))
{
    const parpy_kernel *k = ((parpy_KernelObject *)self)->kernel;
    PyObject *inspect = NULL, *parameter = NULL, *kind = NULL, *params = NULL, *result = NULL;
    inspect = PyImport_ImportModule("inspect");
    if (inspect == NULL) {
        goto done;
    }
    parameter = PyObject_GetAttrString(inspect, "Parameter");
    kind = parameter ? PyObject_GetAttrString(parameter, "POSITIONAL_ONLY") : NULL;
    params = kind ? PyList_New(0) : NULL;
    if (params == NULL) {
        goto done;
    }
    const char *p = k->signature;
    while (*p != '\0') {
        size_t len = strcspn(p, "(), /");
        if (len == 0) {
            p++;
            continue;
        }
        PyObject *name = PyUnicode_FromStringAndSize(p, (Py_ssize_t)len);
        PyObject *param = name ? PyObject_CallFunctionObjArgs(parameter, name, kind, NULL) : NULL;
        Py_XDECREF(name);
        if (param == NULL || PyList_Append(params, param) < 0) {
            Py_XDECREF(param);
            goto done;
        }
        Py_DECREF(param);
        p += len;
    }
    result = PyObject_CallMethod(inspect, "Signature", "O", params);
done:
    Py_XDECREF(inspect);
    Py_XDECREF(parameter);
    Py_XDECREF(kind);
    Py_XDECREF(params);
    return result;
}

static PyObject *
kernel_get_arity(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(((parpy_KernelObject *)self)->kernel->arity);
}

static PyMethodDef kernel_methods[] = {
    {"__reduce__", kernel_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef kernel_getset[] = {
    {"__name__", kernel_get_name, NULL, NULL, NULL},
    {"__qualname__", kernel_get_name, NULL, NULL, NULL},
    {"__module__", kernel_get_module, NULL, NULL, NULL},
    {"__doc__", kernel_get_doc, NULL, NULL, NULL},
    {"__text_signature__", kernel_get_text_signature, NULL, NULL, NULL},
    {"__signature__", kernel_get_signature, NULL, NULL, NULL},
    {"arity", kernel_get_arity, NULL, "Number of arguments per item.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef kernel_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(parpy_KernelObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot kernel_slots[] = {
    {Py_tp_dealloc, kernel_dealloc},
    {Py_tp_repr, kernel_repr},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_methods, kernel_methods},
    {Py_tp_getset, kernel_getset},
    {Py_tp_members, kernel_members},
    {0, NULL},
};

static PyType_Spec kernel_spec = {
    .name = "parpy._core.Kernel",
    .basicsize = sizeof(parpy_KernelObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = kernel_slots,
};

PyTypeObject *
parpy_kernel_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &kernel_spec, NULL);
}

PyObject *
parpy_kernel_new(PyTypeObject *type, const parpy_kernel *kernel)
{
    parpy_KernelObject *self = PyObject_New(parpy_KernelObject, type);
    if (self == NULL) {
        return NULL;
    }
    self->kernel = kernel;
    self->vectorcall = kernel_vectorcall;
    return (PyObject *)self;
}
