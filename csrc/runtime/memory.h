/* The memory budget: what this process may allocate. Plain C. */
#ifndef PARPY_RUNTIME_MEMORY_H
#define PARPY_RUNTIME_MEMORY_H

#include <stdint.h>

/* Below this many bytes no process that can run Python is refused: the
   budget is not looked up. A real shortfall there still ends in MemoryError. */
#define PARPY_MEMORY_CHECK_MIN (UINT64_C(16) << 20)

/* The smaller of physical memory and the address-space/data limits, in
   bytes; UINT64_MAX when none is known. */
uint64_t parpy_memory_budget(void);

#endif /* PARPY_RUNTIME_MEMORY_H */
