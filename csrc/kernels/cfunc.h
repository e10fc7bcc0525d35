/* A user's C function as a kernel: its address and signature, the calls of
 * each signature, loops over buffers, and the kernel table that makes it a
 * parpy kernel (objects/kernel.c gives each such Kernel its own table). */
#ifndef PARPY_KERNELS_CFUNC_H
#define PARPY_KERNELS_CFUNC_H

#include "parpy.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PARPY_CF_INT64,
    PARPY_CF_UINT64,
    PARPY_CF_FLOAT64,
    PARPY_CF_NTYPES,
} parpy_cf_type;

/* Every supported type is 8 bytes: a buffer element, an argument or a result
   is one of these. */
typedef union {
    int64_t i64;
    uint64_t u64;
    double f64;
} parpy_cf_scalar;

#define PARPY_CF_MAX_ARGS 3

/* Calls fn with args (as many as its signature takes), storing its result.
   Returns the function's status: 0 for a function without one. */
typedef int (*parpy_cf_call)(void *fn, const parpy_cf_scalar *args, parpy_cf_scalar *result);

typedef struct {
    void *address;
    int nargs; /* 1 to PARPY_CF_MAX_ARGS: the arguments items give */
    parpy_cf_type args[PARPY_CF_MAX_ARGS];
    parpy_cf_type result;
    /* 1: the function returns a C int status (0: success) and writes its
       result through one more, last, argument: a pointer to the result. */
    int status;
    parpy_cf_call call; /* set by parpy_cf_parse_signature */
} parpy_cfunc;

/* Reads a signature into fn (all but address): "float64(float64, int64)",
   or with a status, "int(float64, int64, float64*)". Types: int64, uint64,
   float64; one to three arguments (and the result's pointer). Returns 0, or
   -1 with the reason in err. Plain C. */
int parpy_cf_parse_signature(const char *text, parpy_cfunc *fn, char *err, size_t errlen);
/* Sets fn->call for the types in fn. */
void parpy_cf_set_call(parpy_cfunc *fn);
/* fn's signature as parpy_cf_parse_signature reads it, into buf. */
void parpy_cf_format_signature(const parpy_cfunc *fn, char *buf, size_t len);
const char *parpy_cf_type_name(parpy_cf_type type);
/* The buffer format character of type ('q', 'Q', 'd'). */
char parpy_cf_type_format(parpy_cf_type type);

/* out[i] = fn(in[i], bound[1], ...) for i in [0, n): elements of fn's first
   argument type in, of its result type out; bound holds the trailing
   arguments. Stops at the first element whose status is not 0. Returns the
   elements done: n, or the position of that element, its status in
   *status. No GIL. */
size_t parpy_cf_loop(const parpy_cfunc *fn, const parpy_cf_scalar *in, parpy_cf_scalar *out,
                     const parpy_cf_scalar *bound, size_t n, int *status);

/* A user function's kernel: its table, made by parpy_cf_kernel_init, and the
   function. A parpy_cf_kernel * is a parpy_kernel *. */
typedef struct {
    parpy_kernel table;
    parpy_cfunc fn;
} parpy_cf_kernel;

/* Its item: the kernel's template sets kernel (and the bound arguments),
   parse or take the rest. */
typedef struct {
    const parpy_cf_kernel *kernel;
    parpy_cf_scalar args[PARPY_CF_MAX_ARGS];
    parpy_cf_scalar result;
    int status; /* the function's, when compute returned PARPY_CF_FAILED */
} parpy_cf_item;

/* What compute returns for a status other than 0: the engine raises
   parpy.StatusError with the item's status. */
#define PARPY_CF_FAILED PARPY_CODE_FIRST

/* Fills k->table for k->fn, named name with doc (both outlive it). */
void parpy_cf_kernel_init(parpy_cf_kernel *k, const char *name, const char *doc);
/* Whether kernel is a user function's (its items are parpy_cf_items). */
int parpy_cf_is_kernel(const parpy_kernel *kernel);

/* The C values of the three types, handed from one kernel to the next. */
extern const parpy_value_type parpy_value_int64;
extern const parpy_value_type parpy_value_uint64;
extern const parpy_value_type parpy_value_float64;

#endif /* PARPY_KERNELS_CFUNC_H */
