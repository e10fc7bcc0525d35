/* parpy._core: module init (multi-phase, PEP 489) and module functions. */
#include "parpy.h"

#include <omp.h>

static inline parpy_state *
get_state(PyObject *module)
{
    return (parpy_state *)PyModule_GetState(module);
}

/* ---- functions ---------------------------------------------------------- */

PyDoc_STRVAR(run_batch_doc,
             "run_batch(kernel, items, workers, schedule, chunksize, control=None, /)\n--\n\n"
             "Run kernel over items on native threads; return the results in input order.\n\n"
             "workers >= 1; schedule 0 (default), 1 (static), 2 (dynamic) or 3 (guided);\n"
             "chunksize >= 0 (0: OpenMP's default); control, a Control that cancels the\n"
             "batch from another thread and counts finished items. Validated by parpy.map.");

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

static PyObject *
run_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 && nargs != 6) {
        PyErr_Format(PyExc_TypeError, "run_batch() takes 5 or 6 arguments (%zd given)", nargs);
        return NULL;
    }
    parpy_state *st = get_state(module);
    parpy_control *control = NULL;
    if (nargs == 6 && args[5] != Py_None) {
        if (!Py_IS_TYPE(args[5], st->control_type)) {
            PyErr_Format(PyExc_TypeError, "control must be a Control or None, not %.200s",
                         Py_TYPE(args[5])->tp_name);
            return NULL;
        }
        control = (parpy_control *)args[5];
    }
    if (!Py_IS_TYPE(args[0], st->kernel_type)) {
        PyErr_Format(PyExc_TypeError, "kernel must be a parpy kernel, not %.200s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    int workers, schedule;
    if (as_int(args[2], &workers) < 0 || as_int(args[3], &schedule) < 0) {
        return NULL;
    }
    Py_ssize_t chunksize = PyLong_AsSsize_t(args[4]);
    if (chunksize == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (workers < 1 || schedule < PARPY_SCHED_AUTO || schedule > PARPY_SCHED_GUIDED ||
        chunksize < 0 || chunksize > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "run_batch: workers, schedule or chunksize out of range");
        return NULL;
    }
    return parpy_run_batch(((parpy_KernelObject *)args[0])->kernel, args[1], workers, schedule,
                           chunksize, control);
}

PyDoc_STRVAR(call_doc,
             "call(kernel, args, control, /)\n--\n\n"
             "kernel(*args), cancelled when control is (parpy.Pool.terminate).");

static PyObject *
call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "call() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    parpy_state *st = get_state(module);
    if (!Py_IS_TYPE(args[0], st->kernel_type) || !PyTuple_Check(args[1]) ||
        !Py_IS_TYPE(args[2], st->control_type)) {
        PyErr_SetString(PyExc_TypeError, "call(kernel, tuple, Control)");
        return NULL;
    }
    return parpy_kernel_call(((parpy_KernelObject *)args[0])->kernel, &PyTuple_GET_ITEM(args[1], 0),
                             PyTuple_GET_SIZE(args[1]), (parpy_control *)args[2]);
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

static PyMethodDef module_methods[] = {
    {"run_batch", (PyCFunction)(void (*)(void))run_batch, METH_FASTCALL, run_batch_doc},
    {"call", (PyCFunction)(void (*)(void))call, METH_FASTCALL, call_doc},
    {"set_num_threads", set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", get_num_threads, METH_NOARGS, get_num_threads_doc},
    {NULL, NULL, 0, NULL},
};

/* ---- init --------------------------------------------------------------- */

static int
add_kernel(PyObject *module, const parpy_kernel *kernel)
{
    PyObject *obj = parpy_kernel_new(get_state(module)->kernel_type, kernel);
    if (obj == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, kernel->name, obj);
    Py_DECREF(obj);
    return rc;
}

static int
module_exec(PyObject *module)
{
    parpy_state *st = get_state(module);
    if (parpy_intconv_init() < 0 || parpy_batch_init() < 0) {
        return -1;
    }
    parpy_fib_init();
    parpy_gmp_memory_init();
    st->kernel_type = parpy_kernel_type_new(module);
    if (st->kernel_type == NULL || PyModule_AddType(module, st->kernel_type) < 0) {
        return -1;
    }
    st->control_type = parpy_control_type_new(module);
    if (st->control_type == NULL || PyModule_AddType(module, st->control_type) < 0) {
        return -1;
    }
    st->queue_type = parpy_queue_type_new(module);
    if (st->queue_type == NULL || PyModule_AddType(module, st->queue_type) < 0) {
        return -1;
    }
    st->str_set_running = PyUnicode_InternFromString("set_running_or_notify_cancel");
    st->str_set_result = PyUnicode_InternFromString("set_result");
    st->str_set_exception = PyUnicode_InternFromString("set_exception");
    st->str_cancel = PyUnicode_InternFromString("cancel");
    if (st->str_set_running == NULL || st->str_set_result == NULL ||
        st->str_set_exception == NULL || st->str_cancel == NULL) {
        return -1;
    }
    if (add_kernel(module, &parpy_kernel_fib) < 0 ||
        add_kernel(module, &parpy_kernel_fib_iterative) < 0 ||
        add_kernel(module, &parpy_kernel_fib_recursive) < 0 ||
        add_kernel(module, &parpy_kernel_fib_mod) < 0) {
        return -1;
    }
    if (PyModule_AddStringConstant(module, "gmp_version", gmp_version) < 0 ||
        PyModule_AddIntConstant(module, "openmp_version", _OPENMP) < 0) {
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
    Py_VISIT(st->queue_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    parpy_state *st = get_state(module);
    Py_CLEAR(st->kernel_type);
    Py_CLEAR(st->control_type);
    Py_CLEAR(st->queue_type);
    Py_CLEAR(st->str_set_running);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_cancel);
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

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "parpy._core",
    .m_doc = "parpy's native core: Fibonacci kernels and GIL-free batches on OpenMP.",
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
    return PyModuleDef_Init(&module_def);
}
