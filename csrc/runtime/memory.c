/* The memory budget. Plain C. */
#define _POSIX_C_SOURCE 200809L /* before any system header: plain C, no Python.h */

#include "runtime/memory.h"

#include <sys/resource.h>
#include <unistd.h>

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
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)rl.rlim_cur < budget) {
        budget = (uint64_t)rl.rlim_cur;
    }
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)rl.rlim_cur < budget) {
        budget = (uint64_t)rl.rlim_cur;
    }
    return budget;
}
