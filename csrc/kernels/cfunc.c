/* A user's C function as a kernel (see cfunc.h). Each signature is called
 * through a function pointer of exactly its C type: the calls below are
 * generated for every combination of the three types, one to three
 * arguments, with and without a status. */
#include "kernels/cfunc.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* ---- the calls of every signature ----------------------------------------- */

/* X(name, C type, union member) for each type, in parpy_cf_type's order;
   one list per nesting level, since a macro does not expand inside itself. */
#define CF_R(X, ...) \
    X(i64, int64_t, __VA_ARGS__) X(u64, uint64_t, __VA_ARGS__) X(f64, double, __VA_ARGS__)
#define CF_A(X, ...) \
    X(i64, int64_t, __VA_ARGS__) X(u64, uint64_t, __VA_ARGS__) X(f64, double, __VA_ARGS__)
#define CF_B(X, ...) \
    X(i64, int64_t, __VA_ARGS__) X(u64, uint64_t, __VA_ARGS__) X(f64, double, __VA_ARGS__)
#define CF_C(X, ...) \
    X(i64, int64_t, __VA_ARGS__) X(u64, uint64_t, __VA_ARGS__) X(f64, double, __VA_ARGS__)

/* One argument: call1_<r>_<a>, and scall1_<r>_<a> for "int(a, r*)". */
#define CALL1(a, A, r, R)                                                                 \
    static int call1_##r##_##a(void *fn, const parpy_cf_scalar *x, parpy_cf_scalar *out)  \
    {                                                                                     \
        out->r = ((R (*)(A))fn)(x[0].a);                                                  \
        return 0;                                                                         \
    }                                                                                     \
    static int scall1_##r##_##a(void *fn, const parpy_cf_scalar *x, parpy_cf_scalar *out) \
    {                                                                                     \
        return ((int (*)(A, R *))fn)(x[0].a, &out->r);                                    \
    }
#define CALL1_R(r, R, _) CF_A(CALL1, r, R)
CF_R(CALL1_R, _)

/* Two: call2_<r>_<a>_<b>, scall2_<r>_<a>_<b>. */
#define CALL2(b, B, r, R, a, A)                                                                 \
    static int call2_##r##_##a##_##b(void *fn, const parpy_cf_scalar *x, parpy_cf_scalar *out)  \
    {                                                                                           \
        out->r = ((R (*)(A, B))fn)(x[0].a, x[1].b);                                             \
        return 0;                                                                               \
    }                                                                                           \
    static int scall2_##r##_##a##_##b(void *fn, const parpy_cf_scalar *x, parpy_cf_scalar *out) \
    {                                                                                           \
        return ((int (*)(A, B, R *))fn)(x[0].a, x[1].b, &out->r);                               \
    }
#define CALL2_A(a, A, r, R) CF_B(CALL2, r, R, a, A)
#define CALL2_R(r, R, _)    CF_A(CALL2_A, r, R)
CF_R(CALL2_R, _)

/* Three: call3_<r>_<a>_<b>_<c>, scall3_<r>_<a>_<b>_<c>. */
#define CALL3(c, C, r, R, a, A, b, B)                                           \
    static int call3_##r##_##a##_##b##_##c(void *fn, const parpy_cf_scalar *x,  \
                                           parpy_cf_scalar *out)                \
    {                                                                           \
        out->r = ((R (*)(A, B, C))fn)(x[0].a, x[1].b, x[2].c);                  \
        return 0;                                                               \
    }                                                                           \
    static int scall3_##r##_##a##_##b##_##c(void *fn, const parpy_cf_scalar *x, \
                                            parpy_cf_scalar *out)               \
    {                                                                           \
        return ((int (*)(A, B, C, R *))fn)(x[0].a, x[1].b, x[2].c, &out->r);    \
    }
#define CALL3_B(b, B, r, R, a, A) CF_C(CALL3, r, R, a, A, b, B)
#define CALL3_A(a, A, r, R)       CF_B(CALL3_B, r, R, a, A)
#define CALL3_R(r, R, _)          CF_A(CALL3_A, r, R)
CF_R(CALL3_R, _)

/* The tables, indexed by status and the types: calls1[s][r][a],
   calls2[s][r][a][b], ... */
#define NT                 PARPY_CF_NTYPES
#define ENTRY1(a, A, r, p) p##1_##r##_##a,
#define ROW1(r, R, p)      {CF_A(ENTRY1, r, p)},
static const parpy_cf_call calls1[2][NT][NT] = {{CF_R(ROW1, call)}, {CF_R(ROW1, scall)}};

#define ENTRY2(b, B, r, a, p) p##2_##r##_##a##_##b,
#define ROW2_A(a, A, r, p)    {CF_B(ENTRY2, r, a, p)},
#define ROW2(r, R, p)         {CF_A(ROW2_A, r, p)},
static const parpy_cf_call calls2[2][NT][NT][NT] = {{CF_R(ROW2, call)}, {CF_R(ROW2, scall)}};

#define ENTRY3(c, C, r, a, b, p) p##3_##r##_##a##_##b##_##c,
#define ROW3_B(b, B, r, a, p)    {CF_C(ENTRY3, r, a, b, p)},
#define ROW3_A(a, A, r, p)       {CF_B(ROW3_B, r, a, p)},
#define ROW3(r, R, p)            {CF_A(ROW3_A, r, p)},
static const parpy_cf_call calls3[2][NT][NT][NT][NT] = {{CF_R(ROW3, call)}, {CF_R(ROW3, scall)}};

void
parpy_cf_set_call(parpy_cfunc *fn)
{
    const parpy_cf_type *a = fn->args;
    int s = fn->status != 0;
    switch (fn->nargs) {
    case 1:
        fn->call = calls1[s][fn->result][a[0]];
        break;
    case 2:
        fn->call = calls2[s][fn->result][a[0]][a[1]];
        break;
    default:
        fn->call = calls3[s][fn->result][a[0]][a[1]][a[2]];
        break;
    }
}

/* ---- loops over buffers ---------------------------------------------------- */

/* One argument, the common case: the function called straight from the loop. */
#define LOOP1(a, A, r, R)                                                                  \
    static void loop1_##r##_##a(void *fn, const parpy_cf_scalar *in, parpy_cf_scalar *out, \
                                size_t n)                                                  \
    {                                                                                      \
        R (*f)(A) = (R (*)(A))fn;                                                          \
        for (size_t i = 0; i < n; i++) {                                                   \
            out[i].r = f(in[i].a);                                                         \
        }                                                                                  \
    }
#define LOOP1_R(r, R, _) CF_A(LOOP1, r, R)
CF_R(LOOP1_R, _)

typedef void (*loop1_fn)(void *fn, const parpy_cf_scalar *in, parpy_cf_scalar *out, size_t n);
#define LENTRY1(a, A, r) loop1_##r##_##a,
#define LROW1(r, R, _)   {CF_A(LENTRY1, r)},
static const loop1_fn loops1[PARPY_CF_NTYPES][PARPY_CF_NTYPES] = {CF_R(LROW1, _)};

size_t
parpy_cf_loop(const parpy_cfunc *fn, const parpy_cf_scalar *in, parpy_cf_scalar *out,
              const parpy_cf_scalar *bound, size_t n, int *status)
{
    if (fn->nargs == 1 && !fn->status) {
        loops1[fn->result][fn->args[0]](fn->address, in, out, n);
        return n;
    }
    parpy_cf_scalar args[PARPY_CF_MAX_ARGS];
    memcpy(args, bound, sizeof(args));
    for (size_t i = 0; i < n; i++) {
        args[0] = in[i];
        int s = fn->call(fn->address, args, &out[i]);
        if (s != 0) {
            *status = s;
            return i;
        }
    }
    return n;
}

/* ---- signatures ------------------------------------------------------------ */

static const char *const type_names[PARPY_CF_NTYPES] = {"int64", "uint64", "float64"};

const char *
parpy_cf_type_name(parpy_cf_type type)
{
    return type_names[type];
}

char
parpy_cf_type_format(parpy_cf_type type)
{
    return "qQd"[type];
}

static const char *
skip_spaces(const char *p)
{
    while (isspace((unsigned char)*p)) {
        p++;
    }
    return p;
}

/* Reads a type name at *p; returns its type, or -1. */
static int
read_type(const char **p)
{
    const char *s = skip_spaces(*p);
    size_t len = 0;
    while (isalnum((unsigned char)s[len]) || s[len] == '_') {
        len++;
    }
    for (int t = 0; t < PARPY_CF_NTYPES; t++) {
        if (strlen(type_names[t]) == len && strncmp(s, type_names[t], len) == 0) {
            *p = s + len;
            return t;
        }
    }
    return -1;
}

/* Whether the word at *p is word; then *p moves past it. */
static int
read_word(const char **p, const char *word)
{
    const char *s = skip_spaces(*p);
    size_t len = strlen(word);
    if (strncmp(s, word, len) != 0 || isalnum((unsigned char)s[len]) || s[len] == '_') {
        return 0;
    }
    *p = s + len;
    return 1;
}

int
parpy_cf_parse_signature(const char *text, parpy_cfunc *fn, char *err, size_t errlen)
{
    const char *p = text;
    fn->status = read_word(&p, "int");
    int t = fn->status ? 0 : read_type(&p);
    if (t < 0) {
        snprintf(err, errlen,
                 "signature %.100s: the result type must be int64, uint64 or float64 (or int, a "
                 "status, with the result's pointer last)",
                 text);
        return -1;
    }
    fn->result = (parpy_cf_type)t;
    p = skip_spaces(p);
    if (*p != '(') {
        snprintf(err, errlen, "signature %.100s: expected '(' after the result type", text);
        return -1;
    }
    p++;
    fn->nargs = 0;
    int pointer = 0; /* the last argument read was a pointer */
    for (;;) {
        t = read_type(&p);
        if (pointer) {
            snprintf(err, errlen,
                     "signature %.100s: the result's pointer must be the last argument", text);
            return -1;
        }
        if (t < 0) {
            snprintf(err, errlen, "signature %.100s: argument %d must be int64, uint64 or float64",
                     text, fn->nargs + 1);
            return -1;
        }
        p = skip_spaces(p);
        pointer = *p == '*';
        if (pointer) {
            if (!fn->status) {
                snprintf(err, errlen,
                         "signature %.100s: a pointer argument is the result's, after a status: "
                         "int(..., %s*)",
                         text, type_names[t]);
                return -1;
            }
            fn->result = (parpy_cf_type)t;
            p = skip_spaces(p + 1);
        }
        else if (fn->nargs == PARPY_CF_MAX_ARGS) {
            snprintf(err, errlen, "signature %.100s: at most %d arguments", text,
                     PARPY_CF_MAX_ARGS);
            return -1;
        }
        else {
            fn->args[fn->nargs++] = (parpy_cf_type)t;
        }
        if (*p == ')') {
            break;
        }
        if (*p != ',') {
            snprintf(err, errlen, "signature %.100s: expected ',' or ')' after argument %d", text,
                     fn->nargs + pointer);
            return -1;
        }
        p++;
    }
    if (*skip_spaces(p + 1) != '\0') {
        snprintf(err, errlen, "signature %.100s: unexpected text after ')'", text);
        return -1;
    }
    if (fn->status && (!pointer || fn->nargs == 0)) {
        snprintf(err, errlen,
                 "signature %.100s: a function returning a status (int) takes one to three "
                 "arguments and then its result's pointer, e.g. int(float64, float64*)",
                 text);
        return -1;
    }
    parpy_cf_set_call(fn);
    return 0;
}

void
parpy_cf_format_signature(const parpy_cfunc *fn, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s(", fn->status ? "int" : type_names[fn->result]);
    for (int i = 0; i < fn->nargs && n >= 0 && (size_t)n < len; i++) {
        n += snprintf(buf + n, len - (size_t)n, "%s%s", i ? ", " : "", type_names[fn->args[i]]);
    }
    if (n >= 0 && (size_t)n < len && fn->status) {
        n += snprintf(buf + n, len - (size_t)n, ", %s*", type_names[fn->result]);
    }
    if (n >= 0 && (size_t)n < len) {
        snprintf(buf + n, len - (size_t)n, ")");
    }
}

/* ---- the kernel ------------------------------------------------------------ */

/* One Python argument into a C value of type; name is the kernel's. */
static int
parse_scalar(PyObject *obj, parpy_cf_type type, const char *name, int position,
             parpy_cf_scalar *out)
{
    if (PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s() argument %d must be %s, not bool", name, position,
                     type == PARPY_CF_FLOAT64 ? "a number" : "an int");
        return -1;
    }
    if (type == PARPY_CF_FLOAT64) {
        if (!PyFloat_Check(obj) && !PyLong_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "%s() argument %d must be a number, not %.200s", name,
                         position, Py_TYPE(obj)->tp_name);
            return -1;
        }
        out->f64 = PyFloat_AsDouble(obj); /* an int beyond float's range: OverflowError */
        return out->f64 == -1.0 && PyErr_Occurred() ? -1 : 0;
    }
    if (!PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s() argument %d must be an int, not %.200s", name, position,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) {
        return -1;
    }
    int overflow = 0;
    if (type == PARPY_CF_INT64) {
        long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
        out->i64 = (int64_t)v;
    }
    else if (_PyLong_Sign(index) < 0) {
        overflow = -1;
    }
    else {
        unsigned long long v = PyLong_AsUnsignedLongLong(index);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            overflow = 1;
        }
        out->u64 = (uint64_t)v;
    }
    int failed = PyErr_Occurred() != NULL;
    if (!failed && overflow != 0) {
        PyErr_Format(PyExc_OverflowError, "%s() argument %d must be in the range of %s, not %R",
                     name, position, type_names[type], index);
        failed = 1;
    }
    Py_DECREF(index);
    return failed ? -1 : 0;
}

static int
cf_parse(void *item, PyObject *const *args)
{
    parpy_cf_item *it = item;
    const parpy_cf_kernel *k = it->kernel;
    for (int i = 0; i < k->fn.nargs; i++) {
        if (parse_scalar(args[i], k->fn.args[i], k->table.name, i + 1, &it->args[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The trailing arguments into the template; it keeps kernel. */
static int
cf_bind(void *item, PyObject *const *args, int first)
{
    parpy_cf_item *it = item;
    const parpy_cf_kernel *k = it->kernel;
    for (int i = first; i < k->fn.nargs; i++) {
        if (parse_scalar(args[i], k->fn.args[i], k->table.name, i + 1, &it->args[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
cf_take(void *item, parpy_value *value)
{
    memcpy(&((parpy_cf_item *)item)->args[0], value->bytes, sizeof(parpy_cf_scalar));
    return PARPY_OK;
}

/* Unknown: a user's function may take a nanosecond or a second. This much
   makes one call release the GIL, and a batch split evenly. */
static double
cf_cost(const void *Py_UNUSED(item))
{
    return 1.0e4;
}

static int
cf_compute(void *item, const parpy_ctx *Py_UNUSED(ctx))
{
    parpy_cf_item *it = item;
    it->status = it->kernel->fn.call(it->kernel->fn.address, it->args, &it->result);
    return it->status == 0 ? PARPY_OK : PARPY_CF_FAILED;
}

static PyObject *
cf_build(void *item)
{
    parpy_cf_item *it = item;
    switch (it->kernel->fn.result) {
    case PARPY_CF_INT64:
        return PyLong_FromLongLong(it->result.i64);
    case PARPY_CF_UINT64:
        return PyLong_FromUnsignedLongLong(it->result.u64);
    default:
        return PyFloat_FromDouble(it->result.f64);
    }
}

static void
cf_give(void *item, parpy_value *value)
{
    memcpy(value->bytes, &((parpy_cf_item *)item)->result, sizeof(parpy_cf_scalar));
}

static void
drop_nothing(parpy_value *Py_UNUSED(value))
{
}

const parpy_value_type parpy_value_int64 = {.name = "int64", .drop = drop_nothing};
const parpy_value_type parpy_value_uint64 = {.name = "uint64", .drop = drop_nothing};
const parpy_value_type parpy_value_float64 = {.name = "float64", .drop = drop_nothing};

static const parpy_value_type *const value_types[PARPY_CF_NTYPES] = {
    &parpy_value_int64, &parpy_value_uint64, &parpy_value_float64};

void
parpy_cf_kernel_init(parpy_cf_kernel *k, const char *name, const char *doc)
{
    k->table = (parpy_kernel){
        .name = name,
        .doc = doc,
        .min_args = k->fn.nargs,
        .max_args = k->fn.nargs,
        .item_size = sizeof(parpy_cf_item),
        .parse = cf_parse,
        .bind = cf_bind,
        .take = cf_take,
        .input = value_types[k->fn.args[0]],
        .cost = cf_cost,
        .compute = cf_compute,
        .build = cf_build,
        .give = cf_give,
        .output = value_types[k->fn.result],
    };
}

int
parpy_cf_is_kernel(const parpy_kernel *kernel)
{
    return kernel->compute == cf_compute;
}
