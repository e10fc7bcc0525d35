/* parpy._core.Kernel: a native kernel as a Python callable.
 *
 * Calling a kernel runs it on one item (parpy_run_one); every parpy executor
 * recognises the type and runs whole batches of it in C.
 */
#include "objects/kernel.h"

#include "engine/call.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <structmember.h>

/* Takes a workers= keyword out of a call's arguments: *workers (borrowed)
   and, in rest and *kept (a new tuple, NULL when no keyword is left), the
   others. *workers stays NULL when the call has none. Returns 0, or -1 with
   an exception set. */
static int
split_workers(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **rest,
              PyObject **workers, PyObject **kept)
{
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames), at = -1;
    for (Py_ssize_t j = 0; j < nkw && at < 0; j++) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, j), "workers") == 0) {
            at = j;
        }
    }
    if (at < 0) {
        return 0;
    }
    if (nargs + nkw > PARPY_MAX_ARGS * 2) {
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return -1;
    }
    *workers = args[nargs + at];
    if (nkw > 1) {
        *kept = PyTuple_New(nkw - 1);
        if (*kept == NULL) {
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        rest[i] = args[i];
    }
    for (Py_ssize_t j = 0, o = 0; j < nkw; j++) {
        if (j != at) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, j);
            PyTuple_SET_ITEM(*kept, o, Py_NewRef(name));
            rest[nargs + o] = args[nargs + j];
            o++;
        }
    }
    return 0;
}

static PyObject *
kernel_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    const parpy_kernel *k = ((parpy_KernelObject *)self)->kernel;
    parpy_state *st = parpy_state_of(Py_TYPE(self));
    union {
        char bytes[256];
        max_align_t align;
    } local;
    void *item =
        k->item_size <= sizeof(local) ? memset(&local, 0, k->item_size) : calloc(1, k->item_size);
    if (item == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *workers = NULL, *kept = NULL;
    PyObject *rest[PARPY_MAX_ARGS * 2];
    int splits = k->split_threads != NULL && ((parpy_KernelObject *)self)->bound == NULL;
    if (kwnames != NULL && splits &&
        split_workers(args, nargs, kwnames, rest, &workers, &kept) < 0) {
        goto done;
    }
    if (workers != NULL) {
        args = rest;
        kwnames = kept;
    }
    if (parpy_parse_call(self, item, args, nargs, kwnames) == 0) {
        int nthreads = splits ? parpy_call_threads(k, item, workers) : 1;
        if (nthreads < 0 || (k->prepare != NULL && k->prepare(item) < 0)) {
            if (k->release != NULL) {
                k->release(item);
            }
        }
        else {
            result = parpy_run_one(st, k, item, nthreads);
        }
    }
done:
    Py_XDECREF(kept);
    if (item != (void *)&local) {
        free(item);
    }
    return result;
}

static void
kernel_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    Py_XDECREF(ko->bound);
    Py_XDECREF(ko->keep);
    Py_XDECREF(ko->origin);
    PyMem_Free(ko->template);
    if (ko->owned != NULL) {
        parpy_user_kernel_free(ko->owned);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
kernel_repr(PyObject *self)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    if (ko->bound == NULL) {
        return PyUnicode_FromFormat("<parpy kernel %s>", ko->kernel->name);
    }
    PyObject *args = PyObject_Repr(ko->bound); /* "(m,)": shown without the comma */
    if (args == NULL) {
        return NULL;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(args);
    int single = PyTuple_GET_SIZE(ko->bound) == 1;
    PyObject *inner = PyUnicode_Substring(args, 1, len - (single ? 2 : 1));
    Py_DECREF(args);
    if (inner == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<parpy kernel %s.bind(%U)>", ko->kernel->name, inner);
    Py_DECREF(inner);
    return r;
}

/* Pickled by name, as functions are: parpy.<name>; a user function's kernel
   as from_library made it, bound kernels as their kernel and arguments. */
static PyObject *
kernel_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    if (ko->owned != NULL) {
        if (ko->origin == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "cannot pickle the kernel %s: a function given by address cannot be "
                         "found in another process; make it with Kernel.from_library",
                         ko->kernel->name);
            return NULL;
        }
        /* parpy._core._from_library(path, symbol, signature, name) */
        PyObject *core = PyImport_ImportModule("parpy._core");
        PyObject *make = core ? PyObject_GetAttrString(core, "_from_library") : NULL;
        PyObject *r = make ? Py_BuildValue("OO", make, ko->origin) : NULL;
        Py_XDECREF(make);
        Py_XDECREF(core);
        return r;
    }
    if (ko->bound == NULL) {
        return PyUnicode_FromString(ko->kernel->name); /* parpy.<name> */
    }
    /* parpy._core._bind(kernel, bound): kernel is parpy.<name>, or the user
       function's kernel this one was bound from */
    PyObject *core = PyImport_ImportModule("parpy._core");
    PyObject *rebind = core ? PyObject_GetAttrString(core, "_bind") : NULL;
    PyObject *base = NULL;
    if (rebind != NULL) {
        base = parpy_is_user_kernel(self) ? Py_NewRef(ko->keep)
                                          : PyObject_GetAttrString(core, ko->kernel->name);
    }
    PyObject *r = base ? Py_BuildValue("O(OO)", rebind, base, ko->bound) : NULL;
    Py_XDECREF(base);
    Py_XDECREF(rebind);
    Py_XDECREF(core);
    return r;
}

PyDoc_STRVAR(kernel_bind_doc,
             "bind($self, *args)\n--\n\n"
             "Return a kernel of one argument x that computes kernel(x, *args).\n\n"
             "The trailing arguments are fixed and validated now. The bound kernel is\n"
             "native in every executor and picklable: parpy.fib_mod.bind(10**9 + 7) is\n"
             "n -> F(n) mod (10**9 + 7).\n\n"
             "Parameters\n"
             "----------\n"
             "*args : object\n"
             "    The kernel's arguments after the first (for fib_mod, m).\n\n"
             "Returns\n"
             "-------\n"
             "Kernel\n"
             "    A kernel of one argument.\n\n"
             "Raises\n"
             "------\n"
             "TypeError\n"
             "    If the number of arguments is not the kernel's, or one has the wrong type.\n"
             "ValueError, OverflowError\n"
             "    If an argument is out of the kernel's range, as for a call.");

static PyObject *
kernel_bind(PyObject *self, PyObject *args)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    const parpy_kernel *k = ko->kernel;
    Py_ssize_t nb = PyTuple_GET_SIZE(args);
    if (ko->bound != NULL) {
        PyErr_Format(PyExc_TypeError, "%s is bound already", k->name);
        return NULL;
    }
    if (1 + nb < k->min_args || 1 + nb > k->max_args || (nb > 0 && k->bind == NULL)) {
        PyErr_Format(PyExc_TypeError,
                     "%s.bind() takes the arguments after the first: %d to %d, not %zd", k->name,
                     k->min_args - 1 > 0 ? k->min_args - 1 : 0, k->max_args - 1, nb);
        return NULL;
    }
    PyObject *all[PARPY_MAX_ARGS] = {NULL};
    for (Py_ssize_t i = 0; i < nb; i++) {
        all[1 + i] = PyTuple_GET_ITEM(args, i);
    }
    void *template = PyMem_Calloc(1, k->item_size);
    if (template == NULL) {
        return PyErr_NoMemory();
    }
    if (ko->template != NULL) { /* a user function's kernel: it names the function */
        memcpy(template, ko->template, k->item_size);
    }
    if (nb > 0 && k->bind(template, all, 1) < 0) {
        PyMem_Free(template);
        return NULL;
    }
    parpy_KernelObject *bound = (parpy_KernelObject *)parpy_kernel_new(Py_TYPE(self), k);
    if (bound == NULL) {
        PyMem_Free(template);
        return NULL;
    }
    bound->bound = Py_NewRef(args);
    bound->template = template;
    if (ko->owned != NULL) {
        bound->keep = Py_NewRef(self); /* it owns the kernel's table */
    }
    return (PyObject *)bound;
}

static PyObject *
kernel_get_bound(PyObject *self, void *Py_UNUSED(closure))
{
    PyObject *bound = ((parpy_KernelObject *)self)->bound;
    return Py_NewRef(bound != NULL ? bound : Py_None);
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

/* "(sig)" from the doc's "name(sig)\n--\n\n" header. Returns a new
   reference. */
static PyObject *
text_signature(const parpy_kernel *k)
{
    const char *open = strchr(k->doc, '(');
    const char *end = strstr(k->doc, "\n--\n\n");
    if (open == NULL || end == NULL || end < open) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromStringAndSize(open, end - open);
}

/* The text signature; a bound kernel's keeps its first parameter only. */
static PyObject *
kernel_text_signature(PyObject *self)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    PyObject *text = text_signature(ko->kernel);
    if (text == NULL || ko->bound == NULL || text == Py_None) {
        return text;
    }
    const char *sig = PyUnicode_AsUTF8(text);
    if (sig == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    char first_param[64];
    snprintf(first_param, sizeof(first_param), "(%.*s, /)", (int)strcspn(sig + 1, ",)"), sig + 1);
    PyObject *first = PyUnicode_FromString(first_param);
    Py_DECREF(text);
    return first;
}

static PyObject *
kernel_get_text_signature(PyObject *self, void *Py_UNUSED(closure))
{
    return kernel_text_signature(self);
}

/* inspect.Signature of the kernel, read from its text signature as
   inspect does for builtins. */
static PyObject *
kernel_get_signature(PyObject *self, void *Py_UNUSED(closure))
{
    PyObject *inspect = NULL, *cls = NULL, *text = NULL, *sig = NULL;
    inspect = PyImport_ImportModule("inspect");
    cls = inspect ? PyObject_GetAttrString(inspect, "Signature") : NULL;
    text = cls ? kernel_text_signature(self) : NULL;
    if (text != NULL) {
        sig = PyObject_CallMethod(inspect, "_signature_fromstr", "OOO", cls, self, text);
    }
    Py_XDECREF(inspect);
    Py_XDECREF(cls);
    Py_XDECREF(text);
    return sig;
}

static PyObject *
kernel_get_min_args(PyObject *self, void *Py_UNUSED(closure))
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    return PyLong_FromLong(ko->bound != NULL ? 1 : ko->kernel->min_args);
}

static PyObject *
kernel_get_max_args(PyObject *self, void *Py_UNUSED(closure))
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    return PyLong_FromLong(ko->bound != NULL ? 1 : ko->kernel->max_args);
}

static PyObject *
value_type_name(const parpy_value_type *type)
{
    if (type == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(type->name);
}

static PyObject *
kernel_get_input(PyObject *self, void *Py_UNUSED(closure))
{
    return value_type_name(((parpy_KernelObject *)self)->kernel->input);
}

static PyObject *
kernel_get_output(PyObject *self, void *Py_UNUSED(closure))
{
    return value_type_name(((parpy_KernelObject *)self)->kernel->output);
}

/* The user function's signature, "float64(float64)"; None for parpy's own. */
static PyObject *
kernel_get_signature_text(PyObject *self, void *Py_UNUSED(closure))
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    if (!parpy_is_user_kernel(self)) {
        Py_RETURN_NONE;
    }
    char buf[96];
    return PyUnicode_FromString(parpy_user_kernel_signature(ko->kernel, buf, sizeof(buf)));
}

/* The user function's address, an int; None for parpy's own. */
static PyObject *
kernel_get_address(PyObject *self, void *Py_UNUSED(closure))
{
    parpy_KernelObject *ko = (parpy_KernelObject *)self;
    if (!parpy_is_user_kernel(self)) {
        Py_RETURN_NONE;
    }
    return PyLong_FromVoidPtr(parpy_user_kernel_address(ko->kernel));
}

PyDoc_STRVAR(from_cfunc_doc,
             "from_cfunc($cls, fn, signature=None, *, name=None)\n--\n\n"
             "Return a kernel that calls the C function fn, with the GIL released.\n\n"
             "Every parpy executor runs it natively: parpy.map over a buffer or a list,\n"
             "Pool, ThreadPoolExecutor, Pipeline stages and Dask (from_library's form).\n"
             "What cannot be checked is the caller's word, as with ctypes: an address\n"
             "that is not a function of that signature crashes the process.\n\n"
             "Parameters\n"
             "----------\n"
             "fn : ctypes function, Numba cfunc, cffi function, PyCapsule or int\n"
             "    The function; an int is its address. A ctypes function with argtypes\n"
             "    and restype, a Numba cfunc, a cffi function (a pointer, or a function\n"
             "    of an API-mode lib) and a capsule named by its C declaration (as\n"
             "    Cython's __pyx_capi__ exports a cdef api function, which must be\n"
             "    noexcept nogil) carry their signature.\n"
             "signature : str, optional\n"
             "    \"result(arg, ...)\" of int64, uint64 and float64, one to three\n"
             "    arguments, e.g. \"float64(float64)\". A function that can fail\n"
             "    returns a C int status and writes its result through a pointer, its\n"
             "    last argument: \"int(float64, float64*)\" for int f(double, double *);\n"
             "    a status other than 0 raises parpy.StatusError for that item, with\n"
             "    its position in a note, and no other item's result is lost. Required\n"
             "    where fn does not carry one (or a capsule's name has types parpy does\n"
             "    not know, such as typedefs); checked against it where it does.\n"
             "name : str, optional\n"
             "    The kernel's name in reprs and errors; by default fn's.\n\n"
             "Returns\n"
             "-------\n"
             "Kernel\n"
             "    The kernel; it keeps fn alive. It does not pickle (use from_library).\n\n"
             "Raises\n"
             "------\n"
             "TypeError\n"
             "    If fn is of another kind, or no signature is given or carried.\n"
             "ValueError\n"
             "    If the signature cannot be read, has unsupported types, or does not\n"
             "    match fn's, or the address is NULL.");

PyDoc_STRVAR(from_library_doc,
             "from_library($cls, path, symbol, signature, *, name=None)\n--\n\n"
             "Return a kernel that calls the function symbol of the shared library path.\n\n"
             "The library is opened with dlopen and stays open while the kernel lives.\n"
             "This form pickles as (path, symbol, signature), so that worker processes\n"
             "and Dask workers open the same library.\n\n"
             "Parameters\n"
             "----------\n"
             "path : str or os.PathLike\n"
             "    The library; a path with a slash is made absolute, a bare name is\n"
             "    looked up as dlopen does (e.g. \"libm.so.6\").\n"
             "symbol : str\n"
             "    The function's name in it.\n"
             "signature : str\n"
             "    \"result(arg, ...)\" of int64, uint64 and float64, e.g.\n"
             "    \"float64(float64)\", or with a status \"int(float64, float64*)\"\n"
             "    (see from_cfunc): the caller's word, which cannot be checked.\n"
             "name : str, optional\n"
             "    The kernel's name; by default symbol.\n\n"
             "Returns\n"
             "-------\n"
             "Kernel\n"
             "    The kernel.\n\n"
             "Raises\n"
             "------\n"
             "OSError\n"
             "    If the library cannot be opened.\n"
             "AttributeError\n"
             "    If it has no such symbol.\n"
             "TypeError, ValueError\n"
             "    If the signature is missing or cannot be read.");

static PyMethodDef kernel_methods[] = {
    {"__reduce__", kernel_reduce, METH_NOARGS, NULL},
    {"bind", kernel_bind, METH_VARARGS, kernel_bind_doc},
    {"from_cfunc", (PyCFunction)(void (*)(void))parpy_kernel_from_cfunc,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, from_cfunc_doc},
    {"from_library", (PyCFunction)(void (*)(void))parpy_kernel_from_library,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, from_library_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef kernel_getset[] = {
    {"__name__", kernel_get_name, NULL, NULL, NULL},
    {"__qualname__", kernel_get_name, NULL, NULL, NULL},
    {"__module__", kernel_get_module, NULL, NULL, NULL},
    {"__doc__", kernel_get_doc, NULL, NULL, NULL},
    {"__text_signature__", kernel_get_text_signature, NULL, NULL, NULL},
    {"__signature__", kernel_get_signature, NULL, NULL, NULL},
    {"min_args", kernel_get_min_args, NULL, "Fewest Python arguments of one item.", NULL},
    {"max_args", kernel_get_max_args, NULL, "Most Python arguments of one item.", NULL},
    {"bound", kernel_get_bound, NULL, "The arguments fixed by bind(), or None.", NULL},
    {"signature", kernel_get_signature_text, NULL,
     "A user function's C signature, e.g. \"float64(float64)\"; None for parpy's kernels.", NULL},
    {"address", kernel_get_address, NULL,
     "A user function's address, an int; None for parpy's kernels.", NULL},
    {"input", kernel_get_input, NULL,
     "The C value type this kernel can take from the kernel before it, or None.", NULL},
    {"output", kernel_get_output, NULL,
     "The C value type this kernel can give to the kernel after it, or None.", NULL},
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
    self->bound = NULL;
    self->template = NULL;
    self->owned = NULL;
    self->keep = NULL;
    self->origin = NULL;
    return (PyObject *)self;
}
