/* GMP memory: recover from a failed allocation instead of aborting.
 *
 * GMP calls abort() when its allocator fails. parpy validates sizes before
 * any work (see parpy_memory_budget), but under an address-space limit or
 * when other threads hold memory an allocation can still fail. Compute
 * functions therefore set a per-thread recovery point (parpy_gmp_recover)
 * around GMP calls; the allocation functions installed here longjmp to it
 * on failure, and the item is reported as PARPY_ENOMEM. Blocks GMP had
 * allocated as scratch inside the failing call are lost: a bounded leak
 * on a path that is already out of memory. Outside a recovery point the
 * behaviour is GMP's own: a message and abort().
 *
 * The functions are process-wide, so they are only installed when GMP's
 * defaults (which are plain malloc/realloc/free, like these) are still in
 * place; a process whose GMP allocator someone else replaced keeps theirs.
 */
#include "parpy.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

_Thread_local jmp_buf *parpy_gmp_recover PARPY_TLS_MODEL = NULL;

/* GMP's default allocation functions (exported by libgmp, declared only in
   its internal headers). */
extern void *__gmp_default_allocate(size_t);
extern void *__gmp_default_reallocate(void *, size_t, size_t);
extern void __gmp_default_free(void *, size_t);

static void
out_of_memory(void)
{
    jmp_buf *recover = parpy_gmp_recover;
    if (recover != NULL) {
        parpy_gmp_recover = NULL;
        longjmp(*recover, 1);
    }
    fprintf(stderr, "GNU MP: Cannot allocate memory\n");
    abort();
}

static void *
gmp_allocate(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        out_of_memory();
    }
    return p;
}

static void *
gmp_reallocate(void *old, size_t old_size, size_t new_size)
{
    (void)old_size;
    void *p = realloc(old, new_size);
    if (p == NULL) {
        out_of_memory(); /* old is still valid and owned by its mpz */
    }
    return p;
}

static void
gmp_free(void *p, size_t size)
{
    (void)size;
    free(p);
}

void
parpy_gmp_memory_init(void)
{
    void *(*alloc)(size_t);
    void *(*realloc_)(void *, size_t, size_t);
    void (*free_)(void *, size_t);
    mp_get_memory_functions(&alloc, &realloc_, &free_);
    if (alloc == __gmp_default_allocate && realloc_ == __gmp_default_reallocate &&
        free_ == __gmp_default_free) {
        mp_set_memory_functions(gmp_allocate, gmp_reallocate, gmp_free);
    }
}

/* ---- memory budget ------------------------------------------------------ */

static uint64_t
min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t
parpy_memory_budget(void)
{
    uint64_t budget = UINT64_MAX;
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_size > 0) {
        budget = (uint64_t)pages * (uint64_t)page_size;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        budget = min_u64(budget, (uint64_t)rl.rlim_cur);
    }
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        budget = min_u64(budget, (uint64_t)rl.rlim_cur);
    }
    return budget;
}

int
parpy_check_memory(const char *what, uint64_t need)
{
    /* Below this no process that can run Python is refused: skip the
       system calls. A real shortfall there still ends in MemoryError, from
       the allocator or through parpy_gmp_recover. */
    if (need < PARPY_MEMORY_CHECK_MIN) {
        return 0;
    }
    uint64_t budget = parpy_memory_budget();
    if (need <= budget) {
        return 0;
    }
    PyErr_Format(PyExc_MemoryError,
                 "%s needs about %llu MiB of memory; this process may use %llu MiB", what,
                 (unsigned long long)(need >> 20), (unsigned long long)(budget >> 20));
    return -1;
}
