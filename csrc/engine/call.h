/* Kernel calls: a Kernel object's arguments parsed into an item, a value
 * taken, a call run, a code raised. The Kernel type itself is
 * objects/kernel.c; its layout is here, where calls read it. */
#ifndef PARPY_ENGINE_CALL_H
#define PARPY_ENGINE_CALL_H

#include "parpy.h"
#include "parpy_state.h"

/* One item: release the GIL while it computes above this many ns. */
#define PARPY_CALL_RELEASE_NS 2.0e3

typedef struct {
    PyObject_HEAD
    const parpy_kernel *kernel;
    vectorcallfunc vectorcall;
    PyObject *bound; /* kernel.bind(*args): the trailing arguments (a tuple), or NULL */
    /* What an item starts as before parse or take (item_size bytes): what
       bind wrote, or a user function's kernel; NULL: zeros. */
    void *template;
    /* A user function's kernel (Kernel.from_cfunc, from_library): its
       table, which this object owns, or NULL (bound ones keep the kernel
       they were bound from alive in keep instead). */
    void *owned;
    PyObject *keep;   /* what the function's code lives in, or the unbound kernel */
    PyObject *origin; /* from_library's (path, symbol, signature, name), for pickles */
} parpy_KernelObject;

/* Whether kernel, a Kernel object, calls a user's C function (from_cfunc,
   from_library, or one bound from those). */
static inline int
parpy_is_user_kernel(PyObject *kernel)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)kernel;
    return ko->owned != NULL || (ko->bound != NULL && ko->keep != NULL);
}

/* Parses one call's arguments (vectorcall convention) into item, zeroed by
   the caller: those of kernel, a Kernel object, followed by its bound ones.
   The item starts as the kernel's template. Returns 0, or -1 with an
   exception set and the item holding nothing. */
int parpy_parse_call(PyObject *kernel, void *item, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);

/* No GIL. Takes *value (owned) into item as kernel, a Kernel object, takes
   its first argument: item is filled from the kernel's template, then by
   take. Returns PARPY_OK or take's code. */
int parpy_take(PyObject *kernel, void *item, parpy_value *value);
/* Whether kernel, a Kernel object, can take values of type output as its
   only argument (its other arguments bound). */
int parpy_kernel_takes(PyObject *kernel, const parpy_value_type *output);

/* Runs one parsed item (a kernel call): computes it, releasing the GIL when
   it is worth it and interruptibly when it is long, and builds its result;
   on nthreads threads (compute_split) when nthreads > 1. Returns a new
   reference, or NULL with an exception set; the item is consumed either
   way. */
PyObject *parpy_run_one(parpy_state *st, const parpy_kernel *kernel, void *item, int nthreads);

/* A single call's workers= (None or an int >= 1): the threads the parsed
   item will use, by the kernel's split_threads; None is
   parpy.get_num_threads(). Returns >= 1, or -1 with an exception set. */
int parpy_call_threads(const parpy_kernel *kernel, const void *item, PyObject *workers);

/* Raises the exception of a code compute returned for item (kernel-defined,
   Cancelled for PARPY_CANCELLED, StatusError for a user function's status),
   or that take returned (item NULL). */
void parpy_raise_code(parpy_state *st, const parpy_kernel *kernel, const void *item, int code);
/* Raises parpy.StatusError: the user function name returned status. */
void parpy_raise_status(parpy_state *st, const char *name, int status);

/* Adds a note to the raised exception (which stays raised). */
void parpy_add_note(parpy_state *st, const char *format, ...);

#endif /* PARPY_ENGINE_CALL_H */
