/* parpy.map of a user function's kernel over a buffer: no Python object
 * per element. */
#ifndef PARPY_ENGINE_BUFFERS_H
#define PARPY_ENGINE_BUFFERS_H

#include "engine/control.h"
#include "parpy.h"
#include "parpy_state.h"

/* out[i] = kernel(items[i]) for every element of items, a C-contiguous
   buffer of the kernel's argument type; into out (a writable buffer of its
   result type and as many elements) if not NULL, else into a new container
   like items (a NumPy array for a NumPy array, an array.array for an
   array.array, else a memoryview). On workers threads (0: the default),
   in blocks of chunksize elements (0: blocks of about a millisecond each);
   control (or NULL) may cancel it and counts its progress. Returns the container, or NULL with an
   exception set; nothing is written when the buffers are refused. */
PyObject *parpy_map_buffer(parpy_state *st, PyObject *kernel, PyObject *items, PyObject *out,
                           int workers, int chunksize, parpy_control *control);

#endif /* PARPY_ENGINE_BUFFERS_H */
