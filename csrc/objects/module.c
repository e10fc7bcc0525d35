/* parpy._core: module init (multi-phase, PEP 489), the kernel registry and
 * module functions. */
#include "parpy.h"
#include "parpy_state.h"

#include "engine/batch.h"
#include "engine/call.h"
#include "engine/control.h"
#include "engine/pipeline.h"
#include "engine/teams.h"
#include "engine/workqueue.h"
#include "lab/lab.h"
#include "objects/kernel.h"
#include "objects/queue.h"
#include "runtime/fork.h"

#include <omp.h>

static inline parpy_state *
get_state(PyObject *module)
{
    return (parpy_state *)PyModule_GetState(module);
}

/* ---- the kernels -------------------------------------------------------- */

#define PARPY_KERNEL_ENTRY(name) &parpy_kernel_##name,
static const parpy_kernel *const kernels[] = {PARPY_KERNELS(PARPY_KERNEL_ENTRY) NULL};

/* ---- functions ---------------------------------------------------------- */

/* Returns the int value of obj, or -1 with an exception set. */
static int
as_int(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit in a C int");
        return -1;
    }
    *out = (int)v;
    return 0;
}

PyDoc_STRVAR(set_num_threads_doc,
             "set_num_threads(n, /)\n--\n\n"
             "Set the threads a batch uses when workers is not given; 0 restores the default\n"
             "(OMP_NUM_THREADS, or the CPUs this process may run on).");

static PyObject *
set_num_threads(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int n;
    if (as_int(arg, &n) < 0) {
        return NULL;
    }
    parpy_set_num_threads(n);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc,
             "get_num_threads()\n--\n\n"
             "Return the threads a batch uses when workers is not given.");

static PyObject *
get_num_threads(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(parpy_default_threads());
}

PyDoc_STRVAR(chain_doc,
             "chain(kernels, args, /)\n--\n\n"
             "kernels[-1](...kernels[1](kernels[0](*args))), where each kernel gives its\n"
             "result to the next as a C value (no Python object in between). Computed on\n"
             "the calling thread; the GIL is released while the kernels compute.");

/* Releases a given-but-not-taken value, or an item, on the way out. */
static PyObject *
chain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    parpy_state *st = get_state(module);
    if (nargs != 2 || !PyTuple_Check(args[0]) || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[0]) < 1) {
        PyErr_SetString(PyExc_TypeError, "chain(kernels: tuple, args: tuple)");
        return NULL;
    }
    Py_ssize_t nk = PyTuple_GET_SIZE(args[0]);
    const parpy_kernel *ks[8];
    if (nk > 8) {
        PyErr_SetString(PyExc_ValueError, "chain: at most 8 kernels");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *k = PyTuple_GET_ITEM(args[0], i);
        if (!Py_IS_TYPE(k, st->kernel_type)) {
            PyErr_Format(PyExc_TypeError, "chain: kernels[%zd] is not a parpy kernel", i);
            return NULL;
        }
        ks[i] = ((parpy_KernelObject *)k)->kernel;
        if (i > 0 && !parpy_kernel_takes(k, ks[i - 1]->output)) {
            PyErr_Format(PyExc_TypeError, "chain: %s cannot take the output of %s", ks[i]->name,
                         ks[i - 1]->name);
            return NULL;
        }
    }
    void *item = calloc(1, ks[0]->item_size);
    if (item == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *tuple = args[1];
    if (parpy_parse_call(PyTuple_GET_ITEM(args[0], 0), item, &PyTuple_GET_ITEM(tuple, 0),
                         PyTuple_GET_SIZE(tuple), NULL) < 0) {
        free(item);
        return NULL;
    }
    for (Py_ssize_t i = 0; i + 1 < nk; i++) {
        const parpy_kernel *k = ks[i];
        parpy_ctx ctx = {{NULL, NULL, NULL}};
        int code;
        const parpy_kernel *failed = k;
        parpy_value value;
        void *next = calloc(1, ks[i + 1]->item_size);
        if (next == NULL) {
            if (k->release != NULL) {
                k->release(item);
            }
            free(item);
            return PyErr_NoMemory();
        }
        void *failed_item = item; /* compute's; take's fails with an empty item */
        Py_BEGIN_ALLOW_THREADS
            code = k->compute(item, &ctx);
            if (code == PARPY_OK) {
                k->give(item, &value);
                code = parpy_take(PyTuple_GET_ITEM(args[0], i + 1), next, &value);
                failed = ks[i + 1];
                failed_item = NULL;
            }
        Py_END_ALLOW_THREADS
        if (code != PARPY_OK) {
            parpy_raise_code(st, failed, failed_item, code);
        }
        if (k->release != NULL) {
            k->release(item);
        }
        free(item);
        item = next;
        if (code != PARPY_OK) {
            free(item);
            return NULL;
        }
    }
    PyObject *result = parpy_run_one(st, ks[nk - 1], item, 1);
    free(item);
    return result;
}

PyDoc_STRVAR(call_doc,
             "call(kernel, args, control=None, /)\n--\n\n"
             "A Batch of one call, kernel(*args): validated now, its outcome exactly the\n"
             "call's. The same as Batch(kernel, args, call=True, control=control).");

static PyObject *
call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "call() takes 2 or 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *control = nargs == 3 && args[2] != Py_None ? args[2] : NULL;
    return parpy_batch_call(get_state(module), args[0], args[1], control);
}

PyDoc_STRVAR(split_threads_doc,
             "_split_threads(kernel, x, workers=None, /)\n--\n\n"
             "The threads kernel(x, workers=workers) computes on: 1 where the kernel\n"
             "does not split a call, or x is too small to gain.");

static PyObject *
split_threads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3 || !PyObject_TypeCheck(args[0], get_state(module)->kernel_type)) {
        PyErr_SetString(PyExc_TypeError, "_split_threads(kernel, x, workers=None)");
        return NULL;
    }
    const parpy_kernel *k = ((parpy_KernelObject *)args[0])->kernel;
    void *item = calloc(1, k->item_size);
    if (item == NULL) {
        return PyErr_NoMemory();
    }
    int n = -1;
    if (parpy_parse_call(args[0], item, &args[1], 1, NULL) == 0) {
        n = k->split_threads == NULL ? 1 : parpy_call_threads(k, item, nargs == 3 ? args[2] : NULL);
        if (k->release != NULL) {
            k->release(item);
        }
    }
    free(item);
    return n < 0 ? NULL : PyLong_FromLong(n);
}

PyDoc_STRVAR(rebind_doc,
             "_bind(kernel, args, /)\n--\n\n"
             "kernel.bind(*args): how a bound kernel is unpickled.");

static PyObject *
rebind(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_bind(kernel, args: tuple)");
        return NULL;
    }
    PyObject *bind = PyObject_GetAttrString(args[0], "bind");
    PyObject *r = bind ? PyObject_Call(bind, args[1], NULL) : NULL;
    Py_XDECREF(bind);
    return r;
}

static PyMethodDef module_methods[] = {
    {"_bind", (PyCFunction)(void (*)(void))rebind, METH_FASTCALL, rebind_doc},
    {"_from_library", parpy_kernel_unpickle, METH_VARARGS,
     "_from_library(path, symbol, signature, name, /)\n--\n\n"
     "Kernel.from_library(path, symbol, signature, name=name): unpickles such a kernel."},
    {"call", (PyCFunction)(void (*)(void))call, METH_FASTCALL, call_doc},
    {"map", (PyCFunction)(void (*)(void))parpy_batch_map, METH_FASTCALL, parpy_batch_map_doc},
    {"set_num_threads", set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"chain", (PyCFunction)(void (*)(void))chain, METH_FASTCALL, chain_doc},
    {"_lab_race", parpy_lab_race, METH_VARARGS, parpy_lab_race_doc},
    {"_lab_deadlock", parpy_lab_deadlock, METH_VARARGS, parpy_lab_deadlock_doc},
    {"_lab_starvation", parpy_lab_starvation, METH_VARARGS, parpy_lab_starvation_doc},
    {"_lab_reduce", parpy_lab_reduce, METH_VARARGS, parpy_lab_reduce_doc},
    {"_lab_divide", parpy_lab_divide, METH_VARARGS, parpy_lab_divide_doc},
    {"_split_threads", (PyCFunction)(void (*)(void))split_threads, METH_FASTCALL,
     split_threads_doc},
    {NULL, NULL, 0, NULL},
};

/* ---- init --------------------------------------------------------------- */

static int
add_type(PyObject *module, PyTypeObject **slot, PyTypeObject *(*make)(PyObject *))
{
    *slot = make(module);
    return *slot == NULL || PyModule_AddType(module, *slot) < 0 ? -1 : 0;
}

static int
module_exec(PyObject *module)
{
    parpy_state *st = get_state(module);
    if (parpy_teams_init() < 0) {
        return -1;
    }
    if (parpy_fork_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "parpy: pthread_atfork failed");
        return -1;
    }
    if (add_type(module, &st->kernel_type, parpy_kernel_type_new) < 0 ||
        add_type(module, &st->control_type, parpy_control_type_new) < 0 ||
        add_type(module, &st->batch_type, parpy_batch_type_new) < 0 ||
        add_type(module, &st->workqueue_type, parpy_workqueue_type_new) < 0 ||
        add_type(module, &st->queue_type, parpy_queue_type_new) < 0 ||
        add_type(module, &st->pipeline_type, parpy_pipeline_type_new) < 0) {
        return -1;
    }
    /* parpy.Queue raises queue's own exceptions */
    PyObject *queue = PyImport_ImportModule("queue");
    if (queue == NULL) {
        return -1;
    }
    st->empty_error = PyObject_GetAttrString(queue, "Empty");
    st->full_error = st->empty_error ? PyObject_GetAttrString(queue, "Full") : NULL;
    if (st->full_error != NULL && PyObject_HasAttrString(queue, "ShutDown")) {
        st->shutdown_error = PyObject_GetAttrString(queue, "ShutDown");
    }
    else if (st->full_error != NULL) { /* before 3.13 */
        st->shutdown_error = PyErr_NewExceptionWithDoc(
            "parpy.ShutDown", "Raised by parpy.Queue.put and get once the queue is shut down.",
            PyExc_Exception, NULL);
    }
    Py_DECREF(queue);
    if (st->shutdown_error == NULL ||
        PyModule_AddObjectRef(module, "ShutDown", st->shutdown_error) < 0) {
        return -1;
    }
    st->cancelled_error = PyErr_NewExceptionWithDoc(
        "parpy._core.Cancelled",
        "Native work was cancelled before it finished (terminate, shutdown, Ctrl-C).",
        PyExc_RuntimeError, NULL);
    if (st->cancelled_error == NULL ||
        PyModule_AddObjectRef(module, "Cancelled", st->cancelled_error) < 0) {
        return -1;
    }
    st->status_error = PyErr_NewExceptionWithDoc(
        "parpy._core.StatusError",
        "A user's C function returned a status other than 0 (signature \"int(..., T*)\").\n\n"
        "Attributes\n----------\nstatus : int\n    The function's status.",
        PyExc_RuntimeError, NULL);
    if (st->status_error == NULL ||
        PyModule_AddObjectRef(module, "StatusError", st->status_error) < 0) {
        return -1;
    }
    st->str_set = PyUnicode_InternFromString("_set");
    st->str_add_note = PyUnicode_InternFromString("add_note");
    if (st->str_set == NULL || st->str_add_note == NULL) {
        return -1;
    }
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        return -1;
    }
    for (const parpy_kernel *const *k = kernels; *k != NULL; k++) {
        PyObject *obj = parpy_kernel_new(st->kernel_type, *k);
        PyObject *name = obj ? PyUnicode_FromString((*k)->name) : NULL;
        int rc = name == NULL || ((*k)->init != NULL && (*k)->init(module) < 0) ||
                 PyModule_AddObjectRef(module, (*k)->name, obj) < 0 ||
                 PyList_Append(names, name) < 0;
        Py_XDECREF(obj);
        Py_XDECREF(name);
        if (rc) {
            Py_DECREF(names);
            return -1;
        }
    }
    int rc = PyModule_AddObjectRef(module, "__all__", names);
    Py_DECREF(names);
    if (rc < 0 || PyModule_AddIntConstant(module, "openmp_version", _OPENMP) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    parpy_state *st = get_state(module);
    Py_VISIT(st->kernel_type);
    Py_VISIT(st->control_type);
    Py_VISIT(st->batch_type);
    Py_VISIT(st->workqueue_type);
    Py_VISIT(st->queue_type);
    Py_VISIT(st->pipeline_type);
    Py_VISIT(st->cancelled_error);
    Py_VISIT(st->status_error);
    Py_VISIT(st->empty_error);
    Py_VISIT(st->full_error);
    Py_VISIT(st->shutdown_error);
    return 0;
}

static int
module_clear(PyObject *module)
{
    parpy_state *st = get_state(module);
    Py_CLEAR(st->kernel_type);
    Py_CLEAR(st->control_type);
    Py_CLEAR(st->batch_type);
    Py_CLEAR(st->workqueue_type);
    Py_CLEAR(st->queue_type);
    Py_CLEAR(st->pipeline_type);
    Py_CLEAR(st->cancelled_error);
    Py_CLEAR(st->status_error);
    Py_CLEAR(st->empty_error);
    Py_CLEAR(st->full_error);
    Py_CLEAR(st->shutdown_error);
    Py_CLEAR(st->str_set);
    Py_CLEAR(st->str_add_note);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

PyModuleDef parpy_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "parpy._core",
    .m_doc = "parpy's native core: kernels, batches on native threads, the work queue.",
    .m_size = sizeof(parpy_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&parpy_module_def);
}
