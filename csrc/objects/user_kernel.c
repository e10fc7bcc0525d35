/* Kernel.from_cfunc and Kernel.from_library: a user's C function as a
 * kernel, with a kernel table of its own (kernels/cfunc.h).
 *
 * from_cfunc reads the address, and the signature where the object carries
 * one, from a ctypes function, a Numba cfunc (.address, .ctypes), a cffi
 * function pointer, a PyCapsule (named by its C declaration, as Cython's
 * __pyx_capi__ names them) or an int; from_library opens a shared library
 * with dlopen. What cannot be checked (that the address is a function, of
 * that signature) is the caller's word, as with ctypes. */
#include "objects/kernel.h"

#include "engine/call.h"
#include "kernels/cfunc.h"

#include <ctype.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(long) == 8 && sizeof(void *) == 8, "an LP64 platform");

/* What a user function's Kernel owns (parpy_KernelObject.owned). */
typedef struct {
    parpy_cf_kernel kernel; /* first */
    void *library;          /* from_library's dlopen handle, or NULL */
    char *name;
    char *doc;
} user_kernel;

void
parpy_user_kernel_free(void *owned)
{
    user_kernel *uk = owned;
    if (uk->library != NULL) {
        dlclose(uk->library);
    }
    free(uk->name);
    free(uk->doc);
    free(uk);
}

const char *
parpy_user_kernel_signature(const parpy_kernel *kernel, char *buf, size_t len)
{
    parpy_cf_format_signature(&((const parpy_cf_kernel *)(const void *)kernel)->fn, buf, len);
    return buf;
}

void *
parpy_user_kernel_address(const parpy_kernel *kernel)
{
    return ((const parpy_cf_kernel *)(const void *)kernel)->fn.address;
}

static char *
copy_string(const char *text)
{
    size_t len = strlen(text) + 1;
    char *copy = malloc(len);
    return copy != NULL ? memcpy(copy, text, len) : NULL;
}

/* A Kernel object for fn, named name; library (a dlopen handle) is owned by
   it from now, whether this succeeds or not. */
static PyObject *
user_kernel_new(PyTypeObject *type, const parpy_cfunc *fn, const char *name, void *library,
                PyObject *keep, PyObject *origin)
{
    static const char *const params[] = {"(x, /)", "(x, y, /)", "(x, y, z, /)"};
    user_kernel *uk = calloc(1, sizeof(user_kernel));
    parpy_cf_item *template = PyMem_Calloc(1, sizeof(parpy_cf_item));
    char signature[96], doc[512];
    if (uk != NULL) {
        uk->library = library;
        uk->kernel.fn = *fn;
        parpy_cf_format_signature(fn, signature, sizeof(signature));
        snprintf(doc, sizeof(doc),
                 "%s%s\n--\n\n"
                 "The C function %s, %s at %p, as a parpy kernel: called with the GIL\n"
                 "released, natively by every parpy executor.%s",
                 name, params[fn->nargs - 1], name, signature, fn->address,
                 fn->status ? "\n\nA status other than 0 raises parpy.StatusError." : "");
        uk->name = copy_string(name);
        uk->doc = copy_string(doc);
    }
    else if (library != NULL) {
        dlclose(library);
    }
    if (uk == NULL || template == NULL || uk->name == NULL || uk->doc == NULL) {
        if (uk != NULL) {
            parpy_user_kernel_free(uk);
        }
        PyMem_Free(template);
        return PyErr_NoMemory();
    }
    parpy_cf_kernel_init(&uk->kernel, uk->name, uk->doc);
    template->kernel = &uk->kernel;
    parpy_KernelObject *self = (parpy_KernelObject *)parpy_kernel_new(type, &uk->kernel.table);
    if (self == NULL) {
        parpy_user_kernel_free(uk);
        PyMem_Free(template);
        return NULL;
    }
    self->owned = uk;
    self->template = template;
    self->keep = Py_XNewRef(keep);
    self->origin = Py_XNewRef(origin);
    return (PyObject *)self;
}

/* ---- signatures from C declarations, ctypes and cffi ------------------------ */

/* Whether [word, word + len) is one of C's own type words or a <stdint.h>
   name: a C type, not a typedef of the user's. */
static int
is_c_type_word(const char *word, size_t len)
{
    static const char *const words[] = {
        "void",     "char",  "short", "int",  "long",     "float",  "double", "signed",
        "unsigned", "const", "_Bool", "bool", "_Complex", "struct", "union",  "enum",
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strlen(words[i]) == len && strncmp(word, words[i], len) == 0) {
            return 1;
        }
    }
    return len > 2 && strncmp(word + len - 2, "_t", 2) == 0 &&
           (strncmp(word, "int", 3) == 0 || strncmp(word, "uint", 4) == 0);
}

static int
is_identifier(const char *text, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)text[0]) || text[0] == '_')) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if (!(isalnum((unsigned char)text[i]) || text[i] == '_')) {
            return 0;
        }
    }
    return 1;
}

/* The parpy type name of a C type name ("double", "const int64_t", "int64_t
   const", "unsigned long n" with a parameter's name), or NULL; then *unknown
   says whether the type is a name parpy does not know (a typedef) rather
   than a C type it does not take (int, float, a pointer...). */
static const char *
type_of_c_name(const char *name, size_t len, int *unknown)
{
    static const char *const names[][2] = {
        {"double", "float64"},
        {"int64_t", "int64"},
        {"long", "int64"},
        {"long int", "int64"},
        {"long long", "int64"},
        {"long long int", "int64"},
        {"signed long", "int64"},
        {"PY_LONG_LONG", "int64"},
        {"ssize_t", "int64"},
        {"Py_ssize_t", "int64"},
        {"intptr_t", "int64"},
        {"uint64_t", "uint64"},
        {"unsigned long", "uint64"},
        {"unsigned long int", "uint64"},
        {"unsigned long long", "uint64"},
        {"unsigned PY_LONG_LONG", "uint64"},
        {"size_t", "uint64"},
        {"uintptr_t", "uint64"},
    };
    for (;;) {
        while (len > 0 && *name == ' ') {
            name++, len--;
        }
        while (len > 0 && name[len - 1] == ' ') {
            len--;
        }
        if (len > 6 && strncmp(name, "const ", 6) == 0) {
            name += 6, len -= 6;
        }
        else if (len > 6 && strncmp(name + len - 6, " const", 6) == 0) {
            len -= 6;
        }
        else {
            break;
        }
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i][0]) == len && strncmp(name, names[i][0], len) == 0) {
            return names[i][1];
        }
    }
    /* a parameter's name after the type */
    const char *last = name + len;
    while (last > name && last[-1] != ' ') {
        last--;
    }
    size_t last_len = (size_t)(name + len - last);
    if (last > name && is_identifier(last, last_len) && !is_c_type_word(last, last_len)) {
        return type_of_c_name(name, (size_t)(last - name), unknown);
    }
    *unknown = is_identifier(name, len) && !is_c_type_word(name, len);
    return NULL;
}

/* Whether [text, text + len) names C's int (a status), spaces around. */
static int
is_int_type(const char *text, size_t len)
{
    static const char *const names[] = {"int", "signed", "signed int", "int32_t"};
    while (len > 0 && *text == ' ') {
        text++, len--;
    }
    while (len > 0 && text[len - 1] == ' ') {
        len--;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == len && strncmp(text, names[i], len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* "double (double, long)", a C declaration, as a parpy signature in out;
   "int (double, double *)" is a status and the result's pointer.
   Returns 0; -1 with ValueError set when the function cannot be a kernel; 1
   with ValueError set when the declaration names a type parpy does not know
   (then the signature must be given). */
static int
signature_of_declaration(const char *decl, char *out, size_t len)
{
    const char *open = strchr(decl, '('), *close = strrchr(decl, ')');
    const char *types[PARPY_CF_MAX_ARGS + 2]; /* the result's, then the arguments' */
    int nargs = 0, unknown = 0, status = 0;
    if (open == NULL || close == NULL || close < open) {
        PyErr_Format(
            PyExc_ValueError,
            "cannot read a signature from the C declaration %.200s: give signature=", decl);
        return 1;
    }
    const char *part = decl, *end = open;
    status = is_int_type(part, (size_t)(end - part));
    types[0] = status ? "int" : type_of_c_name(part, (size_t)(end - part), &unknown);
    if (types[0] == NULL) {
        goto bad_type;
    }
    const char *args = open + 1;
    while (args < close && *args == ' ') {
        args++;
    }
    if (args == close || (close - args == 4 && strncmp(args, "void", 4) == 0)) {
        PyErr_Format(PyExc_ValueError,
                     "the C function %.200s takes no arguments: a kernel's takes one to three",
                     decl);
        return -1;
    }
    for (part = args; part < close; part = end + 1) {
        end = memchr(part, ',', (size_t)(close - part));
        end = end != NULL ? end : close;
        const char *star = memchr(part, '*', (size_t)(end - part));
        if (status && end == close && star != NULL && nargs > 0 && nargs <= PARPY_CF_MAX_ARGS) {
            /* the result's pointer: "double *", "double *out" */
            const char *name = star + 1;
            while (name < end && *name == ' ') {
                name++;
            }
            const char *pointee = type_of_c_name(part, (size_t)(star - part), &unknown);
            if (pointee == NULL || (name < end && !is_identifier(name, (size_t)(end - name)))) {
                end = star;
                goto bad_type;
            }
            types[++nargs] = pointee;
            break;
        }
        if (nargs == PARPY_CF_MAX_ARGS) {
            PyErr_Format(PyExc_ValueError,
                         "the C function %.200s takes more than %d arguments: a kernel's takes "
                         "one to three",
                         decl, PARPY_CF_MAX_ARGS);
            return -1;
        }
        types[++nargs] = type_of_c_name(part, (size_t)(end - part), &unknown);
        if (types[nargs] == NULL) {
            goto bad_type;
        }
    }
    if (status && (part >= close || nargs < 2)) {
        PyErr_Format(PyExc_ValueError,
                     "the C function %.200s returns an int: a kernel's returns int64, uint64 or "
                     "float64, or an int status with the result's pointer last, e.g. "
                     "int (double, double *)",
                     decl);
        return -1;
    }
    int n = snprintf(out, len, "%s(", types[0]);
    for (int i = 1; i <= nargs; i++) {
        n += snprintf(out + n, len - (size_t)n, "%s%s%s", i > 1 ? ", " : "", types[i],
                      status && i == nargs ? "*" : "");
    }
    snprintf(out + n, len - (size_t)n, ")");
    return 0;
bad_type:
    while (part < end && *part == ' ') {
        part++;
    }
    while (end > part && end[-1] == ' ') {
        end--;
    }
    char type[64]; /* PyErr_Format has no %.*s */
    snprintf(type, sizeof(type), "%.*s", (int)(end - part), part);
    if (unknown) {
        PyErr_Format(PyExc_ValueError,
                     "cannot read a signature from the C declaration %.200s: parpy does not "
                     "know the type %s; give signature=, e.g. \"float64(float64)\"",
                     decl, type);
        return 1;
    }
    PyErr_Format(PyExc_ValueError,
                 "the C function %.200s cannot be a kernel: %s is not int64, uint64 or float64 "
                 "(int64_t, uint64_t, double and their C names)",
                 decl, type);
    return -1;
}

/* The parpy type name of a ctypes type ("int" for c_int, "float64*" for
   POINTER(c_double), when allowed), or NULL with ValueError set. */
static const char *
type_of_ctypes(PyObject *ctypes, PyObject *type, int allow_int, int allow_pointer)
{
    const char *result = NULL;
    PyObject *code = PyObject_GetAttrString(type, "_type_");
    PyObject *size = code ? PyObject_CallMethod(ctypes, "sizeof", "O", type) : NULL;
    const char *c = code && PyUnicode_Check(code) ? PyUnicode_AsUTF8(code) : NULL;
    long bytes = size ? PyLong_AsLong(size) : -1;
    if (c != NULL && strlen(c) == 1 && bytes == 8) {
        result = *c == 'd'          ? "float64"
                 : strchr("lq", *c) ? "int64"
                 : strchr("LQ", *c) ? "uint64"
                                    : NULL;
    }
    else if (c != NULL && strcmp(c, "i") == 0 && bytes == 4 && allow_int) {
        result = "int";
    }
    else if (code != NULL && PyType_Check(code) && allow_pointer) {
        const char *pointee = type_of_ctypes(ctypes, code, 0, 0); /* POINTER(T): T */
        result = pointee == NULL                   ? NULL
                 : strcmp(pointee, "float64") == 0 ? "float64*"
                 : strcmp(pointee, "int64") == 0   ? "int64*"
                                                   : "uint64*";
    }
    PyErr_Clear();
    if (result == NULL) {
        PyErr_Format(PyExc_ValueError,
                     "the ctypes type %R is not supported: use c_int64, c_uint64 or c_double (or "
                     "a c_int status with the result's POINTER last)",
                     type);
    }
    Py_XDECREF(code);
    Py_XDECREF(size);
    return result;
}

/* The signature of a ctypes function with restype and argtypes set, into
   out; 0 with out empty when argtypes is not set. Returns 0, or -1 with an
   exception set. */
static int
signature_of_ctypes(PyObject *ctypes, PyObject *fn, char *out, size_t len)
{
    out[0] = '\0';
    PyObject *argtypes = PyObject_GetAttrString(fn, "argtypes");
    PyObject *restype = argtypes ? PyObject_GetAttrString(fn, "restype") : NULL;
    int rc = -1;
    if (restype == NULL) {
        goto done;
    }
    if (argtypes == Py_None) {
        rc = 0; /* the signature must be given */
        goto done;
    }
    if (restype == Py_None) {
        PyErr_SetString(PyExc_ValueError, "the function returns nothing (restype is None)");
        goto done;
    }
    const char *result = type_of_ctypes(ctypes, restype, 1, 0);
    if (result == NULL) {
        goto done;
    }
    int status = strcmp(result, "int") == 0; /* then the result's pointer is last */
    Py_ssize_t nargs = PySequence_Size(argtypes);
    if (nargs < 1 + status || nargs > PARPY_CF_MAX_ARGS + status) {
        PyErr_Format(PyExc_ValueError,
                     status ? "the function takes %zd arguments: one returning a status (c_int) "
                              "takes one to three and its result's POINTER"
                            : "the function takes %zd arguments: a kernel's takes one to three",
                     nargs);
        goto done;
    }
    int n = snprintf(out, len, "%s(", result);
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *t = PySequence_GetItem(argtypes, i);
        const char *arg = t ? type_of_ctypes(ctypes, t, 0, status && i == nargs - 1) : NULL;
        Py_XDECREF(t);
        if (arg == NULL) {
            goto done;
        }
        n += snprintf(out + n, len - (size_t)n, "%s%s", i ? ", " : "", arg);
    }
    snprintf(out + n, len - (size_t)n, ")");
    rc = nargs < 0 ? -1 : 0;
done:
    Py_XDECREF(argtypes);
    Py_XDECREF(restype);
    return rc;
}

/* signature_of_declaration, but a declaration with types parpy does not know
   is left to the given signature, if any (out empty). */
static int
read_declaration(const char *decl, int given, char *out, size_t len)
{
    int rc = signature_of_declaration(decl, out, len);
    if (rc > 0 && given) {
        PyErr_Clear();
        out[0] = '\0';
        rc = 0;
    }
    return rc == 0 ? 0 : -1;
}

/* The signature of a cffi function pointer or API-mode function, from
   ffi.typeof(fn). */
static int
signature_of_cffi(PyObject *ffi, PyObject *fn, int given, char *out, size_t len)
{
    PyObject *t = PyObject_CallMethod(ffi, "typeof", "O", fn);
    PyObject *cname = t ? PyObject_GetAttrString(t, "cname") : NULL;
    const char *decl = cname ? PyUnicode_AsUTF8(cname) : NULL;
    int rc = -1;
    if (decl != NULL) {
        /* "double(*)(double, long)": the declaration without the pointer */
        char text[256];
        const char *star = strstr(decl, "(*)");
        if (star == NULL) {
            PyErr_Format(PyExc_TypeError, "the cffi object is a '%s', not a function pointer",
                         decl);
        }
        else {
            snprintf(text, sizeof(text), "%.*s%s", (int)(star - decl), decl, star + 3);
            rc = read_declaration(text, given, out, len);
        }
    }
    Py_XDECREF(t);
    Py_XDECREF(cname);
    return rc;
}

/* ---- the constructors ---------------------------------------------------- */

/* An int as an address. */
static void *
address_of(PyObject *obj)
{
    if (PyLong_Check(obj) && _PyLong_Sign(obj) < 0) {
        PyErr_Format(PyExc_ValueError, "a function's address cannot be negative, not %R", obj);
        return NULL;
    }
    void *address = PyLong_AsVoidPtr(obj);
    if (address == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "the function's address is NULL");
    }
    return address;
}

/* Whether fn is a cffi cdata (a function pointer, if typeof says so) or a
   function of an API-mode lib (a built-in function). 1, 0, or -1 with an
   exception set. */
static int
is_cffi_function(PyObject *fn)
{
    if (PyCFunction_Check(fn)) {
        PyObject *lib = PyCFunction_GET_SELF(fn);
        return lib != NULL && strcmp(Py_TYPE(lib)->tp_name, "_cffi_backend.Lib") == 0;
    }
    if (strncmp(Py_TYPE(fn)->tp_name, "_cffi_backend.", 14) != 0) {
        return 0;
    }
    PyObject *backend = PyImport_ImportModule("_cffi_backend");
    PyObject *cdata = backend ? PyObject_GetAttrString(backend, "_CDataBase") : NULL;
    int rc = cdata ? PyObject_IsInstance(fn, cdata) : -1;
    Py_XDECREF(backend);
    Py_XDECREF(cdata);
    return rc;
}

/* What from_cfunc reads from fn: its address, its signature (empty when fn
   has none, or, with a signature given, when its declaration names types
   parpy does not know), a default name. Returns 0, or -1 with an exception
   set. */
static int
resolve(PyObject *fn, int given, void **address, char *signature, size_t len, PyObject **name)
{
    signature[0] = '\0';
    *name = NULL;
    if (PyBool_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "from_cfunc() takes a function or an address, not bool");
        return -1;
    }
    if (PyLong_Check(fn)) {
        *address = address_of(fn);
        return *address != NULL ? 0 : -1;
    }
    if (PyCapsule_CheckExact(fn)) {
        const char *decl = PyCapsule_GetName(fn);
        *address = PyCapsule_GetPointer(fn, decl);
        if (*address == NULL) {
            return -1;
        }
        return decl != NULL ? read_declaration(decl, given, signature, len) : 0;
    }
    int rc = -1;
    PyObject *ctypes = PyImport_ImportModule("ctypes");
    PyObject *funcptr = ctypes ? PyObject_GetAttrString(ctypes, "_CFuncPtr") : NULL;
    PyObject *numba_ctypes = NULL, *addr = NULL, *backend = NULL, *ffi = NULL;
    int cffi = 0;
    if (funcptr == NULL) {
        goto done;
    }
    if (PyObject_HasAttrString(fn, "address") && PyObject_HasAttrString(fn, "ctypes")) {
        /* a Numba cfunc: its address, and its ctypes function's signature */
        addr = PyObject_GetAttrString(fn, "address");
        numba_ctypes = addr ? PyObject_GetAttrString(fn, "ctypes") : NULL;
        *address = numba_ctypes ? address_of(addr) : NULL;
        if (*address != NULL && signature_of_ctypes(ctypes, numba_ctypes, signature, len) == 0) {
            *name = PyObject_GetAttrString(fn, "__name__");
            PyErr_Clear();
            rc = 0;
        }
    }
    else if (PyObject_IsInstance(fn, funcptr) > 0) {
        PyObject *voidp = PyObject_GetAttrString(ctypes, "c_void_p");
        PyObject *cast = voidp ? PyObject_CallMethod(ctypes, "cast", "OO", fn, voidp) : NULL;
        addr = cast ? PyObject_GetAttrString(cast, "value") : NULL;
        Py_XDECREF(voidp);
        Py_XDECREF(cast);
        if (addr == Py_None) {
            PyErr_SetString(PyExc_ValueError, "the ctypes function's address is NULL");
        }
        else if (addr != NULL && (*address = address_of(addr)) != NULL &&
                 signature_of_ctypes(ctypes, fn, signature, len) == 0) {
            *name = PyObject_GetAttrString(fn, "__name__");
            PyErr_Clear();
            rc = 0;
        }
    }
    else if ((cffi = is_cffi_function(fn)) > 0) {
        /* cffi's own FFI: unlike cffi.FFI's, its typeof and cast take a lib's functions */
        backend = PyImport_ImportModule("_cffi_backend");
        ffi = backend ? PyObject_CallMethod(backend, "FFI", NULL) : NULL;
        addr = ffi ? PyObject_CallMethod(ffi, "cast", "sO", "uintptr_t", fn) : NULL;
        PyObject *value = addr ? PyNumber_Long(addr) : NULL;
        if (value != NULL && (*address = address_of(value)) != NULL &&
            signature_of_cffi(ffi, fn, given, signature, len) == 0) {
            if (PyCFunction_Check(fn)) {
                *name = PyObject_GetAttrString(fn, "__name__");
                PyErr_Clear();
            }
            rc = 0;
        }
        Py_XDECREF(value);
    }
    else if (cffi == 0) {
        PyErr_Format(PyExc_TypeError,
                     "from_cfunc() takes a ctypes function, a Numba cfunc, a cffi function "
                     "(a pointer, or a function of an API-mode lib), a PyCapsule or an int "
                     "address, not %.200s",
                     Py_TYPE(fn)->tp_name);
    }
done:
    Py_XDECREF(ctypes);
    Py_XDECREF(funcptr);
    Py_XDECREF(numba_ctypes);
    Py_XDECREF(addr);
    Py_XDECREF(backend);
    Py_XDECREF(ffi);
    return rc;
}

/* The signature to use: given (a str, or None), read from the function
   (empty if none), or both, which must agree. */
static int
choose_signature(PyObject *given, const char *read, parpy_cfunc *fn)
{
    char err[256];
    const char *text = read;
    if (given != NULL && given != Py_None) {
        if (!PyUnicode_Check(given)) {
            PyErr_Format(PyExc_TypeError, "signature must be a str, not %.200s",
                         Py_TYPE(given)->tp_name);
            return -1;
        }
        text = PyUnicode_AsUTF8(given);
        if (text == NULL) {
            return -1;
        }
    }
    else if (read[0] == '\0') {
        PyErr_SetString(PyExc_TypeError,
                        "the function does not say its signature: give signature=, e.g. "
                        "\"float64(float64)\"");
        return -1;
    }
    if (parpy_cf_parse_signature(text, fn, err, sizeof(err)) < 0) {
        PyErr_SetString(PyExc_ValueError, err);
        return -1;
    }
    if (text != read && read[0] != '\0') {
        parpy_cfunc other;
        char mine[96], theirs[96];
        if (parpy_cf_parse_signature(read, &other, err, sizeof(err)) < 0) {
            PyErr_SetString(PyExc_ValueError, err);
            return -1;
        }
        parpy_cf_format_signature(fn, mine, sizeof(mine));
        parpy_cf_format_signature(&other, theirs, sizeof(theirs));
        if (strcmp(mine, theirs) != 0) {
            PyErr_Format(PyExc_ValueError, "signature %s does not match the function's, %s", mine,
                         theirs);
            return -1;
        }
    }
    return 0;
}

/* name= as a C string: the given one (a non-empty str), else fallback's. */
static const char *
name_of(PyObject *given, PyObject *fallback, const char *otherwise)
{
    PyObject *name = given != NULL && given != Py_None ? given : fallback;
    if (name == NULL) {
        return otherwise;
    }
    if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) == 0) {
        PyErr_Format(PyExc_TypeError, "name must be a non-empty str, not %R", name);
        return NULL;
    }
    return PyUnicode_AsUTF8(name);
}

PyObject *
parpy_kernel_from_cfunc(PyObject *cls, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fn", "signature", "name", NULL};
    PyObject *fn, *given = NULL, *name_arg = NULL, *found_name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$O:from_cfunc", keywords, &fn, &given,
                                     &name_arg)) {
        return NULL;
    }
    char read[160];
    parpy_cfunc cfunc = {0};
    PyObject *result = NULL;
    int has_signature = given != NULL && given != Py_None;
    if (resolve(fn, has_signature, &cfunc.address, read, sizeof(read), &found_name) == 0 &&
        choose_signature(given, read, &cfunc) == 0) {
        const char *name = name_of(name_arg, found_name, "cfunc");
        if (name != NULL) {
            PyObject *keep = PyLong_Check(fn) ? NULL : fn;
            result = user_kernel_new((PyTypeObject *)cls, &cfunc, name, NULL, keep, NULL);
        }
    }
    Py_XDECREF(found_name);
    return result;
}

PyObject *
parpy_kernel_from_library(PyObject *cls, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "symbol", "signature", "name", NULL};
    PyObject *path_arg, *symbol, *given, *name_arg = NULL, *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OUO|$O:from_library", keywords, &path_arg,
                                     &symbol, &given, &name_arg)) {
        return NULL;
    }
    if (given == Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        "from_library() needs the signature, e.g. "
                        "\"float64(float64)\"");
        return NULL;
    }
    parpy_cfunc cfunc = {0};
    if (choose_signature(given, "", &cfunc) < 0 ||
        !PyUnicode_FSConverter(path_arg, &path)) { /* path: bytes, from str or PathLike */
        return NULL;
    }
    PyObject *result = NULL, *origin = NULL;
    char resolved[PATH_MAX], signature[96];
    const char *file = PyBytes_AS_STRING(path);
    /* A path with a slash is made absolute, so that a pickle opens the same
       file from another directory; a bare name is looked up as dlopen does. */
    if (strchr(file, '/') != NULL && realpath(file, resolved) != NULL) {
        file = resolved;
    }
    const char *sym = PyUnicode_AsUTF8(symbol);
    const char *name = sym ? name_of(name_arg, symbol, NULL) : NULL;
    if (name == NULL) {
        goto done;
    }
    void *library = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        PyErr_Format(PyExc_OSError, "cannot open %s: %s", file, dlerror());
        goto done;
    }
    dlerror();
    cfunc.address = dlsym(library, sym);
    if (cfunc.address == NULL) {
        const char *why = dlerror();
        PyErr_Format(PyExc_AttributeError, "%s has no function %s%s%s", file, sym, why ? ": " : "",
                     why ? why : "");
        dlclose(library);
        goto done;
    }
    parpy_cf_format_signature(&cfunc, signature, sizeof(signature));
    origin = Py_BuildValue("(NssO)", PyUnicode_DecodeFSDefault(file), sym, signature,
                           name_arg ? name_arg : Py_None);
    if (origin == NULL) {
        dlclose(library);
        goto done;
    }
    result = user_kernel_new((PyTypeObject *)cls, &cfunc, name, library, NULL, origin);
done:
    Py_XDECREF(origin);
    Py_XDECREF(path);
    return result;
}

/* parpy._core._from_library(path, symbol, signature, name): how a pickled
   from_library kernel is made again. */
PyObject *
parpy_kernel_unpickle(PyObject *module, PyObject *args)
{
    PyObject *path, *symbol, *signature, *name;
    if (!PyArg_ParseTuple(args, "OOOO:_from_library", &path, &symbol, &signature, &name)) {
        return NULL;
    }
    parpy_state *st = PyModule_GetState(module);
    PyObject *pos = Py_BuildValue("(OOO)", path, symbol, signature);
    PyObject *kw = pos ? Py_BuildValue("{sO}", "name", name) : NULL;
    PyObject *kernel = kw ? parpy_kernel_from_library((PyObject *)st->kernel_type, pos, kw) : NULL;
    Py_XDECREF(pos);
    Py_XDECREF(kw);
    return kernel;
}
