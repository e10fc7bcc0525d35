/* parpy._core.Batch: many items of one kernel, parsed at once, computed on
 * native threads, completed once; and parpy.map's batch, made and run in
 * one call. */
#ifndef PARPY_ENGINE_BATCH_H
#define PARPY_ENGINE_BATCH_H

#include "parpy.h"
#include "parpy_state.h"

typedef struct parpy_batch parpy_batch;

PyTypeObject *parpy_batch_type_new(PyObject *module);
/* A batch of one call, kernel(*args): as Batch(kernel, args, call=True,
   control=control); control may be NULL. Returns a new reference, or NULL
   with an exception set. */
PyObject *parpy_batch_call(parpy_state *st, PyObject *kernel, PyObject *args, PyObject *control);

/* The work queue's side of a batch. A batch queued with n helpers is
   computed by the workers that take them; the last to finish completes it. */
int parpy_batch_helpers(parpy_batch *b);  /* helpers it should be queued with */
double parpy_batch_cost(parpy_batch *b);  /* estimated nanoseconds in all */
int parpy_batch_deferred(parpy_batch *b); /* must be prepared (GIL) before compute */
int parpy_batch_prepare(parpy_batch *b);  /* GIL held; 0, or -1 (the batch then fails) */
/* No GIL: computes chunks until none is left; returns 1 for the helper
   that finished last (it then completes the batch), else 0. */
int parpy_batch_help(parpy_batch *b, const atomic_int *stop);
/* GIL held: a helper that will not run; returns 1 if it was the last. */
int parpy_batch_abandon(parpy_batch *b);
/* GIL held: the outcome, (True, value) or (False, exception), as a new
   reference; NULL with an exception set only if even that failed. */
PyObject *parpy_batch_outcome(parpy_batch *b);
/* The completion target and index given at submit (borrowed). */
void parpy_batch_set_target(parpy_batch *b, PyObject *target, PyObject *index);
PyObject *parpy_batch_target(parpy_batch *b);
PyObject *parpy_batch_index(parpy_batch *b);

/* parpy.map's workers and chunksize: None (0) or an int from 1 to INT_MAX,
   named name in errors. Returns 0, or -1 with an exception set. */
int parpy_count_option(PyObject *obj, const char *name, int *out);

/* parpy._core.map(kernel, items, workers, schedule, chunksize, control,
   started), METH_FASTCALL: parpy.map's batch, made and run in one call. */
PyObject *parpy_batch_map(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char parpy_batch_map_doc[];

#endif /* PARPY_ENGINE_BATCH_H */
